/** Longest string kept in a pushed message; event payloads can carry whole model replies. */
const maxString = 8 * 1024;

/**
 * JSON of anything an inspection event may hold: cycles, actor refs, errors, functions and
 * huge strings are replaced by small stand-ins instead of throwing or flooding a client.
 */
export function safeJson(value: unknown): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === 'string') return item.length > maxString ? `${item.slice(0, maxString)}... (${item.length} chars)` : item;
    if (typeof item === 'bigint') return item.toString();
    if (typeof item === 'function' || typeof item === 'symbol') return undefined;
    if (typeof item !== 'object' || item === null) return item;
    if (item instanceof Error) return { name: item.name, message: item.message };
    if ('sessionId' in item && 'send' in item && typeof item.send === 'function') return { actor: 'id' in item ? item.id : undefined };
    if (seen.has(item)) return '[circular]';
    seen.add(item);
    return item;
  }) ?? 'null';
}
