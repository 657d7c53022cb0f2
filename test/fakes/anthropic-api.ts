import { pieces, startHttpFake, type FakeServer, type FakeStep, type FakeUsage, type Responder, type Script, type StructuredSupport } from './http-fake.ts';

export { step, type FakeStep, type FakeServer, type RecordedRequest, type Script, type StructuredSupport } from './http-fake.ts';

/**
 * How the fake answers POST /v1/messages/count_tokens: `count` with a deterministic count of the
 * request's text (a quarter of its JSON's length), `absent` with a 404 as proxies and local
 * servers without the endpoint do, or a function of the request body.
 */
export type CountTokens = 'count' | 'absent' | ((body: Record<string, unknown>) => number | { status: number });

/** The fake's count of a count_tokens body: what a request sends besides its model and limits. */
export function fakeTokenCount(body: Record<string, unknown>): number {
  return Math.ceil(JSON.stringify({ system: body.system ?? null, tools: body.tools ?? null, messages: body.messages ?? null }).length / 4);
}

/**
 * A loopback Anthropic Messages API: POST /v1/messages, JSON or SSE (`stream: true`), with the
 * validation a client is most likely to trip (auth, version header, required fields, tool_use /
 * tool_result pairing). `apiKey`, when given, is the only key accepted. POST
 * /v1/messages/count_tokens is answered outside the script (in `sideRequests`, as `countTokens` says).
 */
export function startFakeAnthropic(script: Script<FakeStep>, options: { apiKey?: string; structured?: StructuredSupport; countTokens?: CountTokens } = {}): Promise<FakeServer<FakeStep>> {
  const counting = options.countTokens ?? 'count';
  return startHttpFake(
    script,
    (step, responder) => answer(step, responder, options.apiKey, options.structured ?? 'accept'),
    (request, res) => {
      if (request.method !== 'POST' || request.path.split('?')[0] !== '/v1/messages/count_tokens') return false;
      const reply = (status: number, body: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_fake_count' });
        res.end(JSON.stringify(body));
      };
      const body = (typeof request.body === 'object' && request.body !== null ? request.body : {}) as Record<string, unknown>;
      const key = request.headers['x-api-key'] ?? request.headers['authorization']?.replace(/^Bearer /, '');
      if (counting === 'absent') reply(404, { type: 'error', error: { type: 'not_found_error', message: 'Not Found: POST /v1/messages/count_tokens' } });
      else if (!key || (options.apiKey !== undefined && key !== options.apiKey)) reply(401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
      else if (typeof body.model !== 'string' || !Array.isArray(body.messages) || 'max_tokens' in body) reply(400, { type: 'error', error: { type: 'invalid_request_error', message: 'count_tokens takes model and messages, and no max_tokens' } });
      else {
        const counted = counting === 'count' ? fakeTokenCount(body) : counting(body);
        if (typeof counted === 'number') reply(200, { input_tokens: counted });
        else reply(counted.status, { type: 'error', error: { type: counted.status === 429 ? 'rate_limit_error' : 'api_error', message: `status ${counted.status}` } });
      }
      return true;
    },
  );
}

function apiError(responder: Responder, status: number, type: string, message: string, headers: Record<string, string> = {}): void {
  responder.json(status, { type: 'error', error: { type, message } }, { 'request-id': `req_fake_${responder.request.at.toFixed(0)}`, ...headers });
}

/** The request-side checks of the real API; a message when the request would be refused. */
function invalid(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return 'request body is not JSON';
  const request = body as { model?: unknown; max_tokens?: unknown; messages?: unknown };
  if (typeof request.model !== 'string') return 'model: Field required';
  if (typeof request.max_tokens !== 'number') return 'max_tokens: Field required';
  if (!Array.isArray(request.messages) || request.messages.length === 0) return 'messages: at least one message is required';
  const messages = request.messages as { role?: unknown; content?: unknown }[];
  const blocksOf = (content: unknown): { type?: string; id?: string; tool_use_id?: string }[] => (Array.isArray(content) ? content : []);
  for (const [index, message] of messages.entries()) {
    if (message.role !== 'user' && message.role !== 'assistant') return `messages.${index}.role: must be user or assistant`;
    const results = blocksOf(message.content).filter((block) => block.type === 'tool_result');
    if (results.length > 0) {
      const previous = messages[index - 1];
      const uses = previous?.role === 'assistant' ? blocksOf(previous.content).filter((block) => block.type === 'tool_use').map((block) => block.id) : [];
      for (const result of results) {
        if (!uses.includes(result.tool_use_id)) return `messages.${index}.content: unexpected tool_use_id found in tool_result blocks: ${result.tool_use_id}. Each tool_result block must have a corresponding tool_use block in the previous message.`;
      }
    }
    const uses = blocksOf(message.content).filter((block) => block.type === 'tool_use');
    if (message.role === 'assistant' && uses.length > 0 && index < messages.length - 1) {
      const next = blocksOf(messages[index + 1]?.content).filter((block) => block.type === 'tool_result').map((block) => block.tool_use_id);
      for (const use of uses) {
        if (!next.includes(use.id)) return `messages.${index + 1}: tool_use ids were found without tool_result blocks immediately after: ${use.id}`;
      }
    }
  }
  return undefined;
}

function sse(responder: Responder, event: string, data: unknown): boolean {
  return responder.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

async function answer(step: FakeStep, responder: Responder, apiKey: string | undefined, structured: StructuredSupport): Promise<void> {
  const { request } = responder;
  if ('delayMs' in step && step.delayMs) await responder.wait(step.delayMs);
  if (responder.gone()) return;
  if (request.method !== 'POST' || request.path.split('?')[0] !== '/v1/messages') {
    apiError(responder, 404, 'not_found_error', `Not Found: ${request.method} ${request.path}`);
    return;
  }
  const key = request.headers['x-api-key'] ?? request.headers['authorization']?.replace(/^Bearer /, '');
  if (!key || (apiKey !== undefined && key !== apiKey)) {
    apiError(responder, 401, 'authentication_error', 'invalid x-api-key');
    return;
  }
  if (!request.headers['anthropic-version']) {
    apiError(responder, 400, 'invalid_request_error', 'anthropic-version: header is required');
    return;
  }
  // API version 2026-10-21 (SDK 1.x) refuses sampling parameters at any value; 2023-06-01 took them.
  const sampling = ['temperature', 'top_p', 'top_k'].find((field) => typeof request.body === 'object' && request.body !== null && field in request.body);
  if (sampling && request.headers['anthropic-version'] !== '2023-06-01') {
    apiError(responder, 400, 'invalid_request_error', `${sampling}: Extra inputs are not permitted`);
    return;
  }
  const problem = invalid(request.body);
  if (problem) {
    apiError(responder, 400, 'invalid_request_error', problem);
    return;
  }
  const body = request.body as { model: string; stream?: boolean; tool_choice?: { type?: string; name?: string }; tools?: { name?: string }[] };
  const forced = body.tool_choice?.type === 'tool' ? body.tool_choice.name : undefined;
  if (forced !== undefined && structured !== 'accept') {
    apiError(responder, 400, 'invalid_request_error', 'tool_choice: this server does not support forcing a tool');
    return;
  }
  if (forced !== undefined && !(body.tools ?? []).some((tool) => tool.name === forced)) {
    apiError(responder, 400, 'invalid_request_error', `tool_choice: tool ${forced} is not in tools`);
    return;
  }

  switch (step.kind) {
    case 'status':
      apiError(responder, step.status, step.errorType ?? 'api_error', step.message ?? `status ${step.status}`, step.headers);
      return;
    case 'malformed':
      if (step.where === 'body') {
        responder.res.writeHead(200, { 'content-type': 'application/json' });
        responder.res.end('{"id":"msg_fake","type":"message","content":[{"type":"text","te');
      } else {
        responder.startStream();
        responder.write('event: message_start\ndata: {"type":"message_start","message":{not json\n\n');
        responder.end();
      }
      return;
    case 'reset':
      responder.startStream();
      sse(responder, 'message_start', { type: 'message_start', message: message(body.model, [], null, { input: 10, output: 1 }) });
      sse(responder, 'content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
      sse(responder, 'content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Partial ' } });
      responder.res.socket?.destroy();
      return;
    case 'stream_error':
      responder.startStream();
      sse(responder, 'message_start', { type: 'message_start', message: message(body.model, [], null, { input: 10, output: 1 }) });
      sse(responder, 'content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
      sse(responder, 'content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Partial ' } });
      sse(responder, 'error', { type: 'error', error: { type: step.errorType ?? 'overloaded_error', message: step.message ?? 'Overloaded' } });
      responder.end();
      return;
    case 'reply':
      break;
  }

  const model = step.model ?? body.model;
  // A forced tool: a well-behaved model answers with that tool's call, its input the reply's JSON.
  const forcedAnswer = forced !== undefined && !step.toolCalls?.length && step.text !== undefined ? forcedInput(step.text) : undefined;
  const text = forcedAnswer !== undefined ? '' : (step.text ?? (step.toolCalls?.length ? '' : 'ok'));
  const calls = forcedAnswer !== undefined ? [{ name: forced as string, input: forcedAnswer }] : (step.toolCalls ?? []);
  const toolCalls = calls.map((call, index) => ({ id: ('id' in call ? call.id : undefined) ?? `toolu_fake_${index + 1}`, name: call.name, input: call.input, raw: 'rawArguments' in call ? call.rawArguments : undefined }));
  const stopReason = step.stopReason ?? (toolCalls.length > 0 ? 'tool_use' : 'end_turn');
  const noUsage = step.usage === 'none';
  const usage: FakeUsage = step.usage === 'none' ? {} : (step.usage ?? {});
  const blocks = [...(text ? [{ type: 'text', text }] : []), ...toolCalls.map((call) => ({ type: 'tool_use', id: call.id, name: call.name, input: call.input }))];

  if (!body.stream) {
    const whole = message(model, blocks, stopReason, usage);
    if (noUsage) delete whole.usage;
    responder.json(200, noUsage ? whole : { ...whole, usage: usageOf(usage, usage.output ?? 5) });
    return;
  }

  responder.startStream({ 'request-id': 'req_fake_stream' });
  const start = message(model, [], null, usage);
  if (noUsage) delete start.usage;
  sse(responder, 'message_start', { type: 'message_start', message: start });
  sse(responder, 'ping', { type: 'ping' });
  let index = 0;
  if (text) {
    sse(responder, 'content_block_start', { type: 'content_block_start', index, content_block: { type: 'text', text: '' } });
    for (const [n, piece] of pieces(text, 5).entries()) {
      sse(responder, 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'text_delta', text: piece } });
      if (n === 0 && step.stallMs) await responder.wait(step.stallMs);
      if (responder.gone()) return;
    }
    sse(responder, 'content_block_stop', { type: 'content_block_stop', index });
    index += 1;
  }
  for (const call of toolCalls) {
    sse(responder, 'content_block_start', { type: 'content_block_start', index, content_block: { type: 'tool_use', id: call.id, name: call.name, input: {} } });
    for (const piece of pieces(call.raw ?? JSON.stringify(call.input), 7)) {
      sse(responder, 'content_block_delta', { type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: piece } });
    }
    sse(responder, 'content_block_stop', { type: 'content_block_stop', index });
    index += 1;
  }
  sse(responder, 'message_delta', { type: 'message_delta', delta: { stop_reason: stopReason, stop_sequence: null }, ...(noUsage ? {} : { usage: { output_tokens: usage.output ?? 5 } }) });
  sse(responder, 'message_stop', { type: 'message_stop' });
  responder.end();
}

/** The JSON a step's text holds, as the forced tool's input; text that is not a JSON object is sent as `{ "text": ... }`. */
function forcedInput(text: string): unknown {
  // Scripts write replies the way a model writes text, often in a ```json fence.
  const fenced = /```(?:json)?\s*\n([\s\S]*?)\n```/.exec(text);
  try {
    const value: unknown = JSON.parse(fenced?.[1] ?? text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value;
  } catch {
    // a weak model's slip: below
  }
  return { text };
}

function usageOf(usage: { input?: number; cacheRead?: number; cacheWrite?: number }, output: number): Record<string, number> {
  return {
    input_tokens: usage.input ?? 10,
    cache_creation_input_tokens: usage.cacheWrite ?? 0,
    cache_read_input_tokens: usage.cacheRead ?? 0,
    output_tokens: output,
  };
}

/** A Message object; in `message_start` its usage holds the input counts and an output count of 1. */
function message(model: string, content: unknown[], stopReason: string | null, usage: { input?: number; output?: number; cacheRead?: number; cacheWrite?: number }): Record<string, unknown> {
  return {
    id: 'msg_fake',
    type: 'message',
    role: 'assistant',
    model,
    content,
    stop_reason: stopReason,
    stop_sequence: null,
    usage: usageOf(usage, 1),
  };
}
