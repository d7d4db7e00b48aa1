import assert from "node:assert/strict";
import { parseCatalogUrl } from "./catalog_url.ts";

Deno.test("parseCatalogUrl reads sqlite and mysql URLs", () => {
  assert.deepEqual(parseCatalogUrl("sqlite:///var/lib/coldpack/c.db"), {
    kind: "sqlite",
    path: "/var/lib/coldpack/c.db",
  });
  assert.deepEqual(parseCatalogUrl("mysql://backup@db1:3307/coldpack"), {
    kind: "mysql",
    user: "backup",
    host: "db1",
    port: 3307,
    database: "coldpack",
  });
  assert.equal((parseCatalogUrl("mysql://u@h/d") as { port: number }).port, 3306);
});

Deno.test("parseCatalogUrl refuses a password without repeating it", () => {
  assert.throws(() => parseCatalogUrl("mysql://u:hunter2@h/d"), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.match(e.message, /contains a password/);
    assert.doesNotMatch(e.message, /hunter2/);
    return true;
  });
});

Deno.test("parseCatalogUrl names what is wrong", () => {
  assert.throws(() => parseCatalogUrl("sqlite://rel.db"), { message: /must be absolute/ });
  assert.throws(() => parseCatalogUrl("postgres://x/y"), {
    message: 'Unsupported catalog URL "postgres://x/y": scheme must be sqlite or mysql',
  });
  assert.throws(() => parseCatalogUrl("mysql://h/d"), { message: /expected mysql:\/\/USER@HOST/ });
});
