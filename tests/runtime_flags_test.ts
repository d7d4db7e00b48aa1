import assert from "node:assert/strict";
import { BACKUP_PERMISSIONS, V8_FLAGS } from "../scripts/runtime_flags.ts";

Deno.test("deno task backup runs with the same permissions and V8 flags as the binary", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const task: string = config.tasks.backup;
  for (const flag of [...BACKUP_PERMISSIONS, V8_FLAGS]) {
    assert.ok(task.split(" ").includes(flag), `deno.json's backup task lacks ${flag}: ${task}`);
  }
  assert.ok(!/\s-A\b|--allow-all/.test(task), "the backup task must not grant every permission");
});
