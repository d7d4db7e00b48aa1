/**
 * Compiles one self-contained binary per `cmd/` entry into `dist/`, each with
 * only the permissions that program needs (never `-A`).
 *
 * `deno compile` embeds the Deno runtime ("denort"), which it normally
 * downloads from dl.deno.land. Where that is unreachable, point `DENORT_BIN`
 * at a denort binary of the same Deno version (the release asset
 * `denort-<target>.zip`, unzipped).
 *
 * Usage: deno task compile [ENTRY...]      e.g. deno task compile backup
 * @module
 */

import { BACKUP_PERMISSIONS, V8_FLAGS } from "./runtime_flags.ts";

/** Permissions per program; a new `cmd/` entry must be added here. */
const PERMISSIONS: Record<string, { binary: string; flags: string[] }> = {
  backup: { binary: "coldpack-backup", flags: [...BACKUP_PERMISSIONS, V8_FLAGS] },
  admin: { binary: "coldpack-admin", flags: [...BACKUP_PERMISSIONS] },
  restore: { binary: "coldpack-restore", flags: [...BACKUP_PERMISSIONS, V8_FLAGS] },
  check_replication_delay: {
    binary: "check_replication_delay",
    flags: ["--allow-read", "--allow-write", "--allow-env", "--allow-net", "--allow-sys"],
  },
  metrics_agent: { binary: "coldpack-metrics-agent", flags: [...BACKUP_PERMISSIONS, V8_FLAGS] },
  restore_listener: {
    binary: "coldpack-restore-listener",
    flags: [...BACKUP_PERMISSIONS, V8_FLAGS],
  },
  audit: { binary: "coldpack-audit", flags: [...BACKUP_PERMISSIONS, V8_FLAGS] },
  audit_verifier: {
    binary: "coldpack-audit-verifier",
    flags: [...BACKUP_PERMISSIONS, V8_FLAGS],
  },
};

async function main(args: string[]): Promise<number> {
  const entries: string[] = [];
  for await (const e of Deno.readDir("cmd")) {
    if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) {
      entries.push(e.name.slice(0, -3));
    }
  }
  entries.sort();
  const wanted = args.length > 0 ? args : entries;
  for (const name of wanted) {
    if (!entries.includes(name)) {
      console.error(`compile: no cmd/${name}.ts (entries: ${entries.join(", ")})`);
      return 2;
    }
    if (!PERMISSIONS[name]) {
      console.error(`compile: cmd/${name}.ts has no permission list: add it to scripts/compile.ts`);
      return 2;
    }
  }
  const denort = Deno.env.get("DENORT_BIN");
  if (denort) {
    try {
      const st = await Deno.stat(denort);
      if (!st.isFile) throw new Error("not a file");
    } catch (e) {
      console.error(`compile: DENORT_BIN=${denort} is not a readable file: ${e}`);
      return 2;
    }
    console.error(`compile: using the Deno runtime at DENORT_BIN=${denort}`);
  }
  await Deno.mkdir("dist", { recursive: true });
  for (const name of wanted) {
    const { binary, flags } = PERMISSIONS[name]!;
    const out = `dist/${binary}`;
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "compile",
        "--frozen",
        // Worker modules are loaded at run time: embed them.
        "--include",
        "adapters/pack/_pack_worker.ts",
        ...flags,
        "--output",
        out,
        `cmd/${name}.ts`,
      ],
      stdout: "inherit",
      stderr: "piped",
    });
    const { code, stderr } = await cmd.output();
    const err = new TextDecoder().decode(stderr);
    if (code !== 0) {
      Deno.stderr.writeSync(stderr);
      if (!denort && /dl\.deno\.land|denort|download/i.test(err)) {
        console.error(
          `\ncompile: cannot build ${binary}: deno compile needs the Deno runtime (denort ` +
            `${Deno.version.deno}) and could not download it from dl.deno.land.\n` +
            "Set DENORT_BIN to a local denort binary of the same version " +
            `(release asset denort-${Deno.build.target}.zip) and run again.`,
        );
      }
      return 1;
    }
    console.error(`compile: ${out} (${flags.join(" ")})`);
  }
  return 0;
}

Deno.exit(await main(Deno.args));
