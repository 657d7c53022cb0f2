import type Database from 'better-sqlite3';

/** A row as better-sqlite3 returns it, before a repository's mapper names and parses its columns. */
export type Row = Record<string, unknown>;

/** The time a write stamps on its row. */
export const now = (): string => new Date().toISOString();

export type Statements<T extends Record<string, string>> = { readonly [K in keyof T]: Database.Statement };

/**
 * A repository's statements, each prepared on its first use and then kept. Not all at open:
 * preparing the store's ~75 statements there made `Store.open` of a migrated file take ~4 ms
 * instead of ~0.7 ms (median of 200 opens, 2-core machine), and most commands use a few of them.
 */
export function statements<T extends Record<string, string>>(db: Database.Database, sql: T): Statements<T> {
  const prepared: Record<string, Database.Statement> = {};
  for (const [key, text] of Object.entries(sql)) {
    Object.defineProperty(prepared, key, {
      configurable: true,
      enumerable: true,
      get() {
        const statement = db.prepare(text);
        Object.defineProperty(prepared, key, { value: statement, enumerable: true });
        return statement;
      },
    });
  }
  return prepared as Statements<T>;
}
