import { bearerToken, tokenMatches } from './auth.ts';
import { errorReply, type Reply } from './http.ts';

/** What a request says about where it comes from, read from uWS before any await. */
export interface AccessRequest {
  /** The `Host` header. */
  host: string;
  /** The `Origin` header; empty when the client sent none (curl, the CLI, Prometheus). */
  origin: string;
  authorization: string;
  /** The query string: its `token` is how the dashboard page and its WebSocket carry the token, which a browser cannot put in a header there. */
  query: string;
  /** The connection comes from this machine (127.0.0.0/8 or ::1, IPv4-mapped or not). */
  fromLoopback: boolean;
}

const loopbackName = /^(localhost|[a-z0-9-]+\.localhost|127(\.\d{1,3}){3}|\[::1\])$/i;
/** Names a client on this machine may use for it; `0.0.0.0` is what `moderator status` dials for a server bound there. */
const localName = /^(localhost|[a-z0-9-]+\.localhost|127(\.\d{1,3}){3}|\[::1\]|0\.0\.0\.0|\[::\])$/i;

/** An address only this machine can reach. `0.0.0.0` and `::` are every interface, not loopback. */
export function isLoopbackAddress(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host) || /^::ffff:127\./i.test(host);
}

/** Whether a peer's raw address (4 bytes, or 16 for IPv6, as uWS gives it) is a loopback one. */
export function isLoopbackPeer(address: Uint8Array): boolean {
  if (address.length === 4) return address[0] === 127;
  if (address.length !== 16 || address.subarray(0, 10).some((byte) => byte !== 0)) return false;
  const mapped = address[10] === 0xff && address[11] === 0xff;
  return mapped ? address[12] === 127 : address.subarray(10, 15).every((byte) => byte === 0) && address[15] === 1;
}

/** `host:port` as a browser means it, from a Host header or an origin's authority; undefined when malformed. */
function authority(scheme: 'http:' | 'https:', hostAndPort: string): { hostname: string; port: string } | undefined {
  try {
    const url = new URL(`${scheme}//${hostAndPort}`);
    if (url.username || url.password || url.pathname !== '/' || url.search || url.hash) return undefined;
    return { hostname: url.hostname.toLowerCase(), port: url.port || (scheme === 'https:' ? '443' : '80') };
  } catch {
    return undefined;
  }
}

/**
 * A page served by this server itself: the origin names the host and port the request was sent
 * to (so an SSH tunnel on another port works), or a loopback name for a loopback Host on the
 * same port (localhost and 127.0.0.1 are one machine). `null` (sandboxed frames, files) is foreign.
 */
export function isOwnOrigin(origin: string, hostHeader: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(origin);
  } catch {
    return false;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return false;
  const from = authority(parsed.protocol, parsed.host);
  // The server speaks plain HTTP; a TLS proxy in front of it keeps the Host but not the scheme.
  const to = authority(parsed.protocol, hostHeader);
  if (!from || !to || from.port !== to.port) return false;
  return from.hostname === to.hostname || (loopbackName.test(from.hostname) && loopbackName.test(to.hostname));
}

/**
 * Who may use the server, checked before every route and WebSocket upgrade:
 * - on a loopback address, only local host names (a page that rebinds its domain to 127.0.0.1,
 *   DNS rebinding, would otherwise read the run);
 * - from a browser, only the dashboard's own page: a foreign `Origin` is refused, so no other web
 *   page can read the live feed over a WebSocket (which the same-origin policy does not guard)
 *   or post an intervention;
 * - on any other address, the server is reachable from the network: every request needs the
 *   token, except one from this machine that names it by a local name (the image's healthcheck,
 *   `moderator status`, an SSH tunnel), which is no more than a loopback address would serve.
 */
export class AccessPolicy {
  readonly exposed: boolean;

  constructor(
    private readonly boundHost: string,
    private readonly token: string,
  ) {
    this.exposed = !isLoopbackAddress(boundHost);
  }

  refusal(request: AccessRequest): Reply | undefined {
    if (!this.exposed && !localHost(request.host)) {
      return errorReply(403, `host "${request.host}" is not served: open the dashboard through localhost or 127.0.0.1`);
    }
    if (request.origin !== '' && !isOwnOrigin(request.origin, request.host)) {
      return errorReply(403, `origin "${request.origin}" is not served: only the dashboard's own page may call this server from a browser`);
    }
    const local = request.fromLoopback && localHost(request.host);
    if (this.exposed && !local && !this.authorized(request)) {
      return errorReply(401, `this server listens on ${this.boundHost}, which is not a loopback address: send Authorization: Bearer <token>, or open the dashboard with ?token=<token>`);
    }
    return undefined;
  }

  private authorized(request: AccessRequest): boolean {
    const presented = bearerToken(request.authorization) ?? new URLSearchParams(request.query).get('token');
    return presented !== null && tokenMatches(presented, this.token);
  }
}

function localHost(hostHeader: string): boolean {
  const parsed = authority('http:', hostHeader);
  return parsed !== undefined && localName.test(parsed.hostname);
}
