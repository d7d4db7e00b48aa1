import assert from "node:assert/strict";
import { parseDefaultsFile } from "../adapters/replication/mysql.ts";

Deno.test("parseDefaultsFile reads the [client] section as a MySQL client does", () => {
  const text = [
    "# nagios's credentials",
    "[mysqld]",
    "password = not-this-one",
    "[client]",
    "user = nagios",
    'password = "s3cr=t #1"',
    "port=3307",
    "; a comment",
    "skip-ssl",
    "!includedir /etc/mysql/conf.d/",
    "[Client]",
    "socket = /run/mysqld/mysqld.sock",
  ].join("\n");
  assert.deepEqual(parseDefaultsFile(text, "/etc/nagios/replica.cnf"), {
    user: "nagios",
    password: "s3cr=t #1",
    port: "3307",
    "skip-ssl": "",
    socket: "/run/mysqld/mysqld.sock",
  });
});

Deno.test("parseDefaultsFile names the file and line it cannot read", () => {
  assert.throws(
    () => parseDefaultsFile("[client]\nuser nagios = x\n", "/etc/x.cnf"),
    (e: unknown) =>
      e instanceof SyntaxError && e.message === "Cannot read /etc/x.cnf line 2: expected key=value",
  );
});
