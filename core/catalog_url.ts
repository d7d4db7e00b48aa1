/**
 * The `--catalog` URL: `sqlite:///abs/path.db` or `mysql://user@host:3306/db`.
 * @module
 */

/** A parsed catalog location. */
export type CatalogSpec =
  | { readonly kind: "sqlite"; readonly path: string }
  | {
    readonly kind: "mysql";
    readonly user: string;
    readonly host: string;
    readonly port: number;
    readonly database: string;
  };

/**
 * Parses a catalog URL. A password in the URL is refused: it would show in
 * `ps` output and shell history (use `COLDPACK_MYSQL_PASSWORD` or the config
 * file), and the message does not repeat the URL so the secret goes no further.
 *
 * @example
 * ```ts
 * parseCatalogUrl("sqlite:///var/lib/coldpack/catalog.db"); // { kind: "sqlite", path: "/var/lib/coldpack/catalog.db" }
 * ```
 */
export function parseCatalogUrl(text: string): CatalogSpec {
  if (text.startsWith("sqlite://")) {
    const path = decodeURIComponent(text.slice("sqlite://".length));
    if (!path.startsWith("/")) {
      throw new SyntaxError(
        `Invalid catalog URL "${text}": the SQLite path must be absolute (sqlite:///path/to/catalog.db)`,
      );
    }
    return { kind: "sqlite", path };
  }
  if (text.startsWith("mysql://")) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new SyntaxError("Invalid catalog URL: cannot parse the mysql:// URL");
    }
    if (url.password !== "") {
      throw new SyntaxError(
        "Invalid catalog URL: it contains a password; put it in COLDPACK_MYSQL_PASSWORD or the config file",
      );
    }
    const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
    if (url.username === "" || url.hostname === "" || database === "" || database.includes("/")) {
      throw new SyntaxError(
        `Invalid catalog URL "${text}": expected mysql://USER@HOST[:PORT]/DATABASE`,
      );
    }
    return {
      kind: "mysql",
      user: decodeURIComponent(url.username),
      host: url.hostname,
      port: url.port === "" ? 3306 : Number(url.port),
      database,
    };
  }
  throw new SyntaxError(
    `Unsupported catalog URL "${text}": scheme must be sqlite or mysql`,
  );
}
