import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A per-run intervention token: 24 random bytes, 32 URL-safe characters. */
export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

/** Whether an `Authorization` header carries the token; hashing first makes the compare constant-time at any length. */
export function bearerMatches(header: string, token: string): boolean {
  const presented = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
  if (presented === undefined) return false;
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(presented), digest(token));
}
