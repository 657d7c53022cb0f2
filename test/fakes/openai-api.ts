import { pieces, startHttpFake, type FakeServer, type FakeStep, type Responder, type Script, type StructuredSupport } from './http-fake.ts';

export { step, type FakeStep, type FakeServer, type RecordedRequest, type Script, type StructuredSupport } from './http-fake.ts';

/**
 * A loopback OpenAI Chat Completions API: POST /v1/chat/completions, JSON or SSE (`data: {...}`
 * chunks ending in `data: [DONE]`, a last usage chunk when `stream_options.include_usage`), with
 * the checks a client is most likely to trip (bearer key, path, tool call / tool message pairing).
 * `apiKey`, when given, is the only key accepted.
 */
export function startFakeOpenAI(script: Script<FakeStep>, options: { apiKey?: string; structured?: StructuredSupport } = {}): Promise<FakeServer<FakeStep>> {
  return startHttpFake(script, (step, responder) => answer(step, responder, options.apiKey, options.structured ?? 'accept'));
}

function apiError(responder: Responder, status: number, type: string, message: string, code: string | null = null, headers: Record<string, string> = {}): void {
  responder.json(status, { error: { message, type, param: null, code } }, { 'x-request-id': 'req_fake', ...headers });
}

interface ChatMessage {
  role?: unknown;
  content?: unknown;
  tool_calls?: { id?: string }[];
  tool_call_id?: string;
}

function invalid(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return 'We could not parse the JSON body of your request.';
  const request = body as { model?: unknown; messages?: unknown };
  if (typeof request.model !== 'string') return "you must provide a model parameter";
  if (!Array.isArray(request.messages) || request.messages.length === 0) return "Invalid 'messages': empty array.";
  const messages = request.messages as ChatMessage[];
  for (const [index, message] of messages.entries()) {
    if (message.role === 'tool') {
      // A tool message answers a call of the nearest assistant message before it.
      let back = index - 1;
      while (back >= 0 && messages[back]?.role === 'tool') back -= 1;
      const calls = (messages[back]?.role === 'assistant' ? (messages[back]?.tool_calls ?? []) : []).map((call) => call.id);
      if (!calls.includes(message.tool_call_id)) return `Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.`;
    }
    if (message.role === 'assistant' && message.tool_calls?.length) {
      const answered = new Set<string | undefined>();
      for (let next = index + 1; messages[next]?.role === 'tool'; next += 1) answered.add(messages[next]?.tool_call_id);
      for (const call of message.tool_calls) {
        if (!answered.has(call.id)) return `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${call.id}`;
      }
    }
  }
  return undefined;
}

function chunk(responder: Responder, data: unknown): boolean {
  return responder.write(`data: ${JSON.stringify(data)}\n\n`);
}

async function answer(step: FakeStep, responder: Responder, apiKey: string | undefined, structured: StructuredSupport): Promise<void> {
  const { request } = responder;
  if ('delayMs' in step && step.delayMs) await responder.wait(step.delayMs);
  if (responder.gone()) return;
  if (request.method !== 'POST' || request.path.split('?')[0] !== '/v1/chat/completions') {
    apiError(responder, 404, 'invalid_request_error', `Invalid URL (${request.method} ${request.path})`);
    return;
  }
  const key = request.headers['authorization']?.replace(/^Bearer /, '');
  if (!key || (apiKey !== undefined && key !== apiKey)) {
    apiError(responder, 401, 'invalid_request_error', 'Incorrect API key provided.', 'invalid_api_key');
    return;
  }
  const problem = invalid(request.body);
  if (problem) {
    apiError(responder, 400, 'invalid_request_error', problem);
    return;
  }
  const body = request.body as { model: string; stream?: boolean; stream_options?: { include_usage?: boolean }; response_format?: { type?: string } };
  const format = body.response_format?.type;
  if (format !== undefined && (structured === 'refuse-all' || (structured === 'refuse-json-schema' && format === 'json_schema'))) {
    apiError(responder, 400, 'invalid_request_error', structured === 'refuse-all' ? `response_format is not supported by this server` : 'Either "json_schema" or "grammar" can be specified, but not both');
    return;
  }
  const base = { id: 'chatcmpl-fake', object: 'chat.completion.chunk', created: 1_700_000_000, model: body.model, system_fingerprint: null };

  switch (step.kind) {
    case 'status':
      apiError(responder, step.status, step.errorType ?? 'server_error', step.message ?? `status ${step.status}`, step.status === 429 ? 'rate_limit_exceeded' : null, step.headers);
      return;
    case 'malformed':
      if (step.where === 'body') {
        responder.res.writeHead(200, { 'content-type': 'application/json' });
        responder.res.end('{"id":"chatcmpl-fake","choices":[{"message":{"content":"cut');
      } else {
        responder.startStream();
        responder.write('data: {"id":"chatcmpl-fake","choices":[{not json\n\n');
        responder.end();
      }
      return;
    case 'reset':
      responder.startStream();
      chunk(responder, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Partial ' }, finish_reason: null }] });
      responder.res.socket?.destroy();
      return;
    case 'stream_error':
      responder.startStream();
      chunk(responder, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: 'Partial ' }, finish_reason: null }] });
      chunk(responder, { error: { message: step.message ?? 'The server had an error while processing your request.', type: step.errorType ?? 'server_error', param: null, code: null } });
      responder.end();
      return;
    case 'reply':
      break;
  }

  const model = step.model ?? body.model;
  const text = step.text ?? (step.toolCalls?.length ? '' : 'ok');
  const toolCalls = (step.toolCalls ?? []).map((call, index) => ({ id: call.id ?? `call_fake_${index + 1}`, name: call.name, arguments: call.rawArguments ?? JSON.stringify(call.input) }));
  const finishReason = step.stopReason ?? (toolCalls.length > 0 ? 'tool_calls' : 'stop');
  const counts = step.usage === 'none' ? undefined : step.usage;
  const cached = counts?.cacheRead ?? 0;
  const usage = {
    prompt_tokens: (counts?.input ?? 10) + cached,
    completion_tokens: counts?.output ?? 5,
    total_tokens: (counts?.input ?? 10) + cached + (counts?.output ?? 5),
    prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };

  if (!body.stream) {
    responder.json(200, {
      id: 'chatcmpl-fake',
      object: 'chat.completion',
      created: base.created,
      model,
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: text || null,
            refusal: null,
            ...(toolCalls.length ? { tool_calls: toolCalls.map((call) => ({ id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments } })) } : {}),
          },
          finish_reason: finishReason,
          logprobs: null,
        },
      ],
      ...(step.usage === 'none' ? {} : { usage }),
    });
    return;
  }

  const withUsage = body.stream_options?.include_usage === true && step.usage !== 'none';
  const send = (data: Record<string, unknown>): boolean => chunk(responder, { ...base, model, ...data, ...(withUsage && !('usage' in data) ? { usage: null } : {}) });
  responder.startStream();
  send({ choices: [{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }] });
  for (const [n, piece] of (text ? pieces(text, 5) : []).entries()) {
    send({ choices: [{ index: 0, delta: { content: piece }, logprobs: null, finish_reason: null }] });
    if (n === 0 && step.stallMs) await responder.wait(step.stallMs);
    if (responder.gone()) return;
  }
  for (const [index, call] of toolCalls.entries()) {
    send({ choices: [{ index: 0, delta: { tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] }, logprobs: null, finish_reason: null }] });
    for (const piece of pieces(call.arguments, 6)) {
      send({ choices: [{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }] });
    }
  }
  send({ choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }] });
  if (withUsage) send({ choices: [], usage });
  responder.write('data: [DONE]\n\n');
  responder.end();
}
