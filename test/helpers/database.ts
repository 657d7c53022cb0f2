import type { ExecutionContext } from 'ava';
import Database from 'better-sqlite3';

/**
 * A connection of the test's own to a store's database file, closed at teardown. The store keeps
 * its connection private; a test opens this one for what no repository reads (a pragma, a column
 * the records leave out) or, `writable`, to set a row back by hand as a crash would have left it.
 */
export function ownConnection(t: ExecutionContext, file: string, options: { writable?: boolean } = {}): Database.Database {
  const db = new Database(file, { readonly: options.writable !== true, fileMustExist: true });
  t.teardown(() => db.close());
  return db;
}
