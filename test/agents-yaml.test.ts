import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { agentDefinitionWarnings, agentsFileSchema, configSchema, resolveStep, type AgentDefinitions } from '../config/index.ts';
import { startFakeOpenAI, step, type FakeStep, type RecordedRequest } from './fakes/openai-api.ts';
import { cliAsync } from './helpers/cli.ts';

const seedAgents = agentsFileSchema.parse(parseYaml(fs.readFileSync(path.join(import.meta.dirname, 'fixtures', 'config', 'agents.yaml'), 'utf8'))).agents;

const definition = (type: string, system_prompt: string, extra: Partial<AgentDefinitions[string]> = {}) => ({ name: type, type, system_prompt, ...extra });

test('precedence: agents.<agent> in the config < the entry named after the agent < the generator / reviewer of the step', (t) => {
  const config = configSchema.parse({ agents: { techlead: { model: 'config-model', max_tokens: 8000, max_tool_turns: 7 }, moderator: { temperature: 0.4 } } });
  const agents: AgentDefinitions = {
    techlead: definition('engineer', 'NAMED TECHLEAD', { temperature: 0.2 }),
    gen: definition('generator', 'GENERATOR', { max_tokens: 3000 }),
    rev: definition('reviewer', 'REVIEWER', { model: 'review-model' }),
  };

  const implement = resolveStep(config, agents, 'techlead', 'implement');
  t.is(implement.systemPrompt, 'GENERATOR');
  t.like(implement.settings, { model: 'config-model', temperature: 0.2, max_tokens: 3000, max_tool_turns: 7 }, "the TechLead's other settings stay");
  t.deepEqual(implement.definitions, ['techlead', 'gen']);
  t.deepEqual(resolveStep(config, agents, 'techlead', 'revise'), implement, 'revise is generation too');

  const techlead = resolveStep(config, agents, 'techlead');
  t.is(techlead.systemPrompt, 'NAMED TECHLEAD', 'without a step only the named entry applies');
  t.like(techlead.settings, { temperature: 0.2, max_tokens: 8000 });

  const review = resolveStep(config, agents, 'moderator', 'review');
  t.is(review.systemPrompt, 'REVIEWER');
  t.like(review.settings, { model: 'review-model', temperature: 0.4, max_tokens: 8000 });
  t.deepEqual(resolveStep(config, agents, 'moderator'), { systemPrompt: undefined, settings: config.agents.moderator, definitions: [] }, 'clarify and plan keep the config and the built-in prompt');
  t.deepEqual(resolveStep(config, {}, 'ever_thinker').settings, config.agents.ever_thinker);
});

test("the seed's agents.yaml configures the TechLead's implementation and the Moderator's review and warns about nothing", (t) => {
  const config = configSchema.parse({});
  t.like(resolveStep(config, seedAgents, 'techlead', 'implement'), { systemPrompt: 'You are an expert software engineer...', settings: { temperature: 0.7, max_tokens: 4000 } });
  t.like(resolveStep(config, seedAgents, 'moderator', 'review'), { systemPrompt: 'You are a critical senior code reviewer...', settings: { temperature: 0.3, max_tokens: 2000 } });
  t.deepEqual(agentDefinitionWarnings(config, seedAgents), []);
});

test('what is set but not implemented is named: the specialists flag and entries that configure nothing', (t) => {
  const warnings = agentDefinitionWarnings(configSchema.parse({ features: { specialists: true } }), { ...seedAgents, security: definition('security_auditor', 'Audit.') });
  t.is(warnings.length, 2);
  t.regex(warnings[0] ?? '', /^features\.specialists \(DUO_AGENT_ENABLE_SPECIALISTS\) is on, but specialist agents are not implemented/);
  t.regex(warnings[1] ?? '', /^agents\.yaml: agents\.security \(type security_auditor\) is not used: .*specialists are not implemented$/);
});

// --- a whole run at a loopback Chat Completions API ------------------------------------------------

const key = 'sk-test-agents-yaml';
const fenced = (value: unknown) => `\`\`\`json\n${JSON.stringify(value)}\n\`\`\``;
const usage = { input: 100, output: 20 };

interface ChatBody {
  max_tokens?: number;
  temperature?: number;
  messages: { role: string; content: unknown }[];
}

const bodyOf = (request: RecordedRequest) => request.body as ChatBody;
const textOf = (content: unknown): string => (typeof content === 'string' ? content : JSON.stringify(content ?? ''));
const userPrompt = (request: RecordedRequest) => textOf(bodyOf(request).messages.find((message) => message.role === 'user')?.content);
const systemOf = (request: RecordedRequest) => textOf(bodyOf(request).messages.find((message) => message.role === 'system')?.content);

/** One task, one approving review, no improvements; every request is kept by the fake. */
function model(request: RecordedRequest): FakeStep {
  const prompt = userPrompt(request);
  if (prompt.includes('single word')) return step.reply({ text: 'ok', usage });
  if (prompt.includes('Clarify the scope')) return step.reply({ text: fenced({ summary: 'A greeting module', assumptions: [], questions: [] }), usage });
  if (prompt.includes('Plan the tasks')) {
    return step.reply({ text: fenced({ tasks: [{ id: 'T1', title: 'Greeting', type: 'feature', description: 'hello(name)', acceptance_criteria: ['hello("x") is "hello x"'], depends_on: [] }] }), usage });
  }
  if (prompt.includes('Implement the task')) {
    const files = [
      { path: 'package.json', content: '{ "type": "module" }\n' },
      { path: 'src/hello.js', content: 'export const hello = (name) => `hello ${name}`;\n' },
      { path: 'test/hello.test.js', content: "import test from 'node:test';\nimport assert from 'node:assert';\nimport { hello } from '../src/hello.js';\ntest('hello', () => assert.equal(hello('x'), 'hello x'));\n" },
    ];
    return step.reply({ text: fenced({ summary: 'hello(name) with a test', files, delete: [] }), usage });
  }
  if (prompt.includes('Review it')) return step.reply({ text: fenced({ verdict: 'approve', summary: 'meets the criterion', comments: [] }), usage });
  if (prompt.includes('Improvement cycle')) return step.reply({ text: fenced({ proposals: [] }), usage });
  return step.status(400, { errorType: 'invalid_request_error', message: `the fake does not know this prompt: ${prompt.slice(0, 80)}` });
}

function targetWith(files: Record<string, string>): string {
  const target = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moderator-agents-')), 'greet');
  fs.mkdirSync(target);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(target, name), text);
  const git = (...args: string[]) => execFileSync('git', ['-c', 'user.name=u', '-c', 'user.email=u@x', ...args], { cwd: target });
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'config');
  return target;
}

test("a run with agents.yaml's generator and reviewer: their prompts and limits reach the implement and review requests; the specialists flag warns once", async (t) => {
  const fake = await startFakeOpenAI(model, { apiKey: key });
  t.teardown(() => fake.close());
  const target = targetWith({
    'duo-agent.config.yaml': `project:\n  test_command: node --test test/\nmodel:\n  provider: openai\n  base_url: ${fake.url}\n  max_retries: 0\nagents:\n  moderator:\n    model: gpt-test\n  techlead:\n    model: gpt-test\n  ever_thinker:\n    model: gpt-test\n`,
    'agents.yaml': [
      'agents:',
      '  generator:',
      '    name: Code Generator',
      '    type: generator',
      '    system_prompt: You are GENERATOR-7, an expert software engineer.',
      '    temperature: 0.15',
      '    max_tokens: 3210',
      '  reviewer:',
      '    name: Code Reviewer',
      '    type: reviewer',
      '    system_prompt: You are REVIEWER-9, a critical senior code reviewer.',
      '    temperature: 0.05',
      '    max_tokens: 2101',
      '',
    ].join('\n'),
  });
  const run = await cliAsync(['Write a greeting module', '--target', target, '-y', '--json'], {
    timeoutMs: 150_000,
    env: { DUO_AGENT_MONITOR_PORT: '0', OPENAI_API_KEY: key, DUO_AGENT_ENABLE_SPECIALISTS: 'true' },
  });
  t.is(run.code, 0, run.stderr);
  t.is((JSON.parse(run.stdout) as { outcome: string }).outcome, 'done');

  const implement = fake.requests.filter((request) => userPrompt(request).includes('Implement the task'));
  t.is(implement.length, 1);
  for (const request of implement) {
    t.true(systemOf(request).startsWith('You are GENERATOR-7, an expert software engineer.'), systemOf(request).slice(0, 80));
    t.like(bodyOf(request), { max_tokens: 3210, temperature: 0.15 });
  }
  const review = fake.requests.filter((request) => userPrompt(request).includes('Review it'));
  t.is(review.length, 1);
  for (const request of review) {
    t.true(systemOf(request).startsWith('You are REVIEWER-9, a critical senior code reviewer.'), systemOf(request).slice(0, 80));
    t.like(bodyOf(request), { max_tokens: 2101, temperature: 0.05 });
  }
  const clarify = fake.requests.find((request) => userPrompt(request).includes('Clarify the scope'));
  t.truthy(clarify);
  if (clarify) {
    t.true(systemOf(clarify).startsWith('You are the Moderator'), "clarifying keeps the Moderator's own prompt");
    t.like(bodyOf(clarify), { max_tokens: 8000, temperature: 0.3 }, 'and the config defaults');
  }

  const warnings = run.stderr.split('\n').filter((line) => /features\.specialists .*not implemented/.test(line));
  t.is(warnings.length, 1, run.stderr);
});
