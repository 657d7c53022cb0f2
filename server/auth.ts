import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A per-run intervention token: 24 random bytes, 32 URL-safe characters. */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Whether a presented token is the token; hashing first makes the compare constant-time at any length. */
export function tokenMatches(presented: string, token: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(presented), digest(token));
}

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(header: string): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}

/** Whether an `Authorization` header carries the token. */
export function bearerMatches(header: string, token: string): boolean {
  const presented = bearerToken(header);
  return presented !== undefined && tokenMatches(presented, token);
}
