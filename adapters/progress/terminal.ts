/**
 * Progress for people: a one-line bar redrawn on a terminal, notes as lines
 * on stderr. When stderr is not a terminal (cron, systemd) only notes print.
 * @module
 */

import type { Progress, ProgressSnapshot } from "../../core/ports.ts";
import { formatBytes } from "../../core/size.ts";

const encoder = new TextEncoder();

/** Progress drawn on stderr. */
export class TerminalProgress implements Progress {
  #tty: boolean;
  #last = 0;
  #drawn = false;
  #snapshot: ProgressSnapshot | null = null;
  #started = Date.now();

  constructor(options: { tty?: boolean } = {}) {
    this.#tty = options.tty ?? Deno.stderr.isTerminal();
  }

  update(s: ProgressSnapshot): void {
    this.#snapshot = s;
    if (!this.#tty) return;
    const now = Date.now();
    if (now - this.#last < 100) return;
    this.#last = now;
    this.#draw(s);
  }

  note(message: string): void {
    this.#clear();
    write(`${message}\n`);
    if (this.#snapshot && this.#tty) this.#draw(this.#snapshot);
  }

  /** Removes the bar (before the summary line). */
  done(): void {
    this.#clear();
  }

  #draw(s: ProgressSnapshot): void {
    const secs = (Date.now() - this.#started) / 1000;
    const rate = secs > 0 ? formatBytes(s.archivedBytes / secs) + "/s" : "";
    const total = s.archivedFiles + s.outstanding;
    const pct = total > 0 ? Math.floor((100 * s.archivedFiles) / total) : 0;
    const width = 20;
    const fill = Math.round((pct / 100) * width);
    const bar = "#".repeat(fill) + "-".repeat(width - fill);
    const line = `[${bar}] ${pct}% ${s.archivedFiles}/${total} files, ` +
      `${formatBytes(s.archivedBytes)} in ${s.archives} archives, ${rate}` +
      (s.failures > 0 ? `, ${s.failures} failures` : "");
    write(`\r\x1b[2K${line}`);
    this.#drawn = true;
  }

  #clear(): void {
    if (this.#drawn) write("\r\x1b[2K");
    this.#drawn = false;
  }
}

function write(s: string): void {
  Deno.stderr.writeSync(encoder.encode(s));
}
