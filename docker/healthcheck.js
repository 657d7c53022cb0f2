// The image's HEALTHCHECK: exit 0 when the monitoring server answers and does not call itself
// unhealthy (`degraded` still serves). The URL is an argument: the Dockerfile's shell form
// expands the configured port into it. Inside the container it asks 127.0.0.1 and needs no token;
// from elsewhere (the host, through the published port) the server wants its token, the second
// argument.
const [url, token] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node healthcheck.js http://127.0.0.1:8080/api/health [token]\n');
  process.exit(2);
}
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(4000), headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = await response.json();
  process.stdout.write(`${body.status}\n`);
  process.exit(response.ok && body.status !== 'unhealthy' ? 0 : 1);
} catch (error) {
  process.stdout.write(`no answer from ${url}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
