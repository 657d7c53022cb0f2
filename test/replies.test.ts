/**
 * How replies are read: the slips real models make are mended before validation, what cannot be
 * mended is listed whole, and the contract and wire schema come from the same zod schema.
 */
import test from 'ava';
import { z } from 'zod';
import { extractJson, parseReply, replies, reviewReply, planReply, changeReply, analyzeReply, clarifyReply } from '../actors/replies.ts';
import { toolCallsInText } from '../actors/text-tool-calls.ts';

const review = (text: string) => parseReply(text, reviewReply);
const good = { verdict: 'approve', summary: 'all criteria met', comments: [] };

test('fences in any case, on one line, or left open are found', (t) => {
  for (const text of [
    '```JSON\n{"verdict": "approve", "summary": "all criteria met"}\n```',
    '```Json {"verdict": "approve", "summary": "all criteria met"}```',
    'Here you go:\n```json\n{"verdict": "approve", "summary": "all criteria met"}',
    '```\n{"verdict": "approve", "summary": "all criteria met"}\n```\nHope that helps!',
  ]) {
    t.deepEqual(review(text), { ok: true, value: good }, text);
  }
});

test('a <think> block, prose before and after, and brackets in the prose do not hide the JSON', (t) => {
  const text = '<think>The verdict is {"verdict": "request_changes"}? No. [1] says approve.</think>\nAfter reading the diff [see above], my answer:\n{"verdict": "approve", "summary": "all criteria met"}\nThanks!';
  t.deepEqual(review(text), { ok: true, value: good });
  t.deepEqual(review('<think>unclosed reasoning about {braces}</think> {"verdict":"approve","summary":"all criteria met"}'), { ok: true, value: good });
});

test('trailing commas, comments, single quotes and unquoted keys are repaired', (t) => {
  t.deepEqual(review("{'verdict': 'approve', // fine\n summary: 'all criteria met', comments: [],}"), { ok: true, value: good });
});

test('enum case and synonyms, numeric strings, one string for a list and null lists are normalised', (t) => {
  t.deepEqual(review('{"Verdict": "Approved", "summary": "all criteria met", "comments": null}'), { ok: true, value: good });
  t.like(review('{"verdict": "changes requested", "summary": "s", "feedback": "rename x"}'), { ok: true, value: { verdict: 'request_changes', comments: ['rename x'] } });
  const plan = parseReply('[{"id": "T1", "title": "t", "type": "Feature", "description": "d", "acceptanceCriteria": "it works", "dependencies": null}]', planReply);
  t.deepEqual(plan, { ok: true, value: { tasks: [{ id: 'T1', title: 't', type: 'feature', description: 'd', acceptance_criteria: ['it works'], depends_on: [] }] } });
  const analysis = parseReply('{"proposals": [{"title": "x", "angle": "Code Quality", "description": "d", "acceptance_criteria": ["c"], "impact": "4", "effort": "2", "risk": 1}]}', analyzeReply);
  t.like(analysis, { ok: true, value: { proposals: [{ angle: 'code_quality', impact: 4, effort: 2 }] } });
  t.like(parseReply('{"summary": "s"}', clarifyReply), { ok: true, value: { assumptions: [], questions: [] } });
  t.like(parseReply('{"review": {"verdict": "lgtm", "summary": "s"}}', reviewReply), { ok: true, value: { verdict: 'approve' } });
});

test('a value copied from the contract is refused as a placeholder', (t) => {
  const result = review('{"verdict": "approve", "summary": "string"}');
  t.false(result.ok);
  t.regex(result.ok ? '' : result.error, /summary: "string" is a placeholder copied from the contract/);
});

test('every problem is listed, each naming the field, what it expects and what it got', (t) => {
  const result = parseReply('{"tasks": [{"id": "T 1", "type": "epic", "acceptance_criteria": []}]}', planReply);
  t.false(result.ok);
  const problems = result.ok ? [] : result.problems;
  t.true(problems.length >= 5, problems.join('\n'));
  t.true(problems.some((line) => /^tasks\.0\.id: .*found "T 1"/.test(line)));
  t.true(problems.some((line) => /^tasks\.0\.type: .*expected one of .*found "epic"/.test(line)));
  t.true(problems.some((line) => /^tasks\.0\.title: .*\(missing\)/.test(line)));
  t.true(problems.some((line) => /^tasks\.0\.acceptance_criteria: /.test(line)));
});

test('a reply cut off at its token limit is refused, naming the setting, even when it could be closed', (t) => {
  const result = parseReply('{"summary": "s", "files": [{"path": "a.js", "content": "export const a =', changeReply, { truncated: { maxTokens: 8000, setting: 'agents.techlead.max_tokens' } });
  t.false(result.ok);
  t.regex(result.ok ? '' : result.error, /cut off at its token limit \(8000 tokens, agents\.techlead\.max_tokens\)/);
});

test('prose without JSON says so', (t) => {
  const result = review('I approve this change!');
  t.regex(result.ok ? '' : result.error, /not valid JSON: it holds no JSON object/);
});

test('fences inside JSON strings do not end the JSON', (t) => {
  const inner = JSON.stringify({ summary: 's', files: [{ path: 'README.md', content: '# x\n```sh\nnpm test\n```\n' }] });
  t.is(extractJson(`Here it is:\n\`\`\`json\n${inner}\n\`\`\`\nDone.`), inner);
});

test('the contract and the wire schema are derived from the schema, never written beside it', (t) => {
  for (const kind of Object.values(replies)) {
    const shape = z.toJSONSchema(kind.schema, { io: 'input' }) as { properties: Record<string, unknown> };
    for (const field of Object.keys(shape.properties)) t.true(kind.contract.includes(`"${field}"`), `${kind.name}: ${field}`);
    t.regex(JSON.stringify(kind.wire), /"additionalProperties":false/);
    // Strict structured output: every property required, no keyword a grammar compiler chokes on.
    const walk = (node: Record<string, unknown>): void => {
      if (node.type === 'object') t.deepEqual([...(node.required as string[])].sort(), Object.keys(node.properties as object).sort());
      for (const key of ['minLength', 'pattern', 'default', '$schema']) t.false(key in node, `${kind.name}: ${key}`);
      for (const child of Object.values((node.properties ?? {}) as Record<string, Record<string, unknown>>)) walk(child);
      if (node.items) walk(node.items as Record<string, unknown>);
    };
    walk(kind.wire);
  }
  t.regex(replies.review.contract, /"verdict": "approve" \| "request_changes"/);
  t.regex(replies.plan.contract, /"type": "feature" \| "fix" \| "docs" \| "test" \| "refactor" \| "perf" \| "chore"/);
});

test('tool calls written as text are found in the shapes servers leave them in, only for tools the agent has', (t) => {
  const tools = ['read_file', 'write_file'];
  t.like(toolCallsInText('<tool_call>\n{"name": "read_file", "arguments": {"path": "a.js"}}\n</tool_call>', tools), [{ name: 'read_file', input: { path: 'a.js' } }]);
  t.like(toolCallsInText('<function=write_file>{"path": "b.js", "content": "x",}</function>', tools), [{ name: 'write_file', input: { path: 'b.js', content: 'x' } }]);
  t.like(toolCallsInText('[TOOL_CALLS] [{"name": "read_file", "arguments": "{\\"path\\": \\"c.js\\"}"}]', tools), [{ name: 'read_file', input: { path: 'c.js' } }]);
  t.like(toolCallsInText('I will read it.\n```json\n{"name": "read_file", "parameters": {"path": "d.js"}}\n```', tools), [{ name: 'read_file', input: { path: 'd.js' } }]);
  t.like(toolCallsInText('{"type": "function", "function": {"name": "read_file", "arguments": {"path": "e.js"}}}', tools), [{ name: 'read_file' }]);
  t.deepEqual(toolCallsInText('{"name": "rm_rf", "arguments": {}}', tools), []);
  t.deepEqual(toolCallsInText('```json\n{"summary": "done", "files": []}\n```', tools), [], 'a final answer is not a tool call');
  const broken = toolCallsInText('<tool_call>{"name": "read_file", "arguments": "{{{"}</tool_call>', tools);
  t.is(broken[0]?.name, 'read_file');
  t.regex(broken[0]?.inputError ?? '', /not a JSON object/);
});
