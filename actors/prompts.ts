import { resolveStep, type Config, type LlmAgent, type RoleStepOf } from '../config/index.ts';
import type { TaskRecord } from '../services/store/types.ts';
import { LOOKED_FOR, detectTestCommand, type DetectedTestCommand } from '../services/test-environment.ts';
import { replies } from './replies.ts';
import type { RunServices } from './run-services.ts';

const defaultSystem: Record<LlmAgent, string> = {
  moderator:
    'You are the Moderator of an autonomous software team. You turn requirements into a clear scope, split it into small ' +
    'pull-request-sized tasks with testable acceptance criteria, and review every pull request strictly against its criteria.',
  techlead:
    'You are the TechLead of an autonomous software team. You implement one task at a time in the repository you are shown, ' +
    'with tests, keeping changes small and focused. You write complete files, never fragments or placeholders.',
  ever_thinker:
    'You are the Ever-Thinker of an autonomous software team. After the planned work is merged you look for improvements ' +
    'from six angles: performance, code quality, UX, testing, documentation and architecture, and rank them honestly by ' +
    'impact, effort and risk. Propose only what is worth doing.',
};

/**
 * The system prompt of an agent's call: agents.yaml's for the step's role or for the agent
 * (config/agent-steps.ts has the precedence), else the built-in one; then the reply contract.
 */
export function systemPrompt<A extends LlmAgent>(services: RunServices, agent: A, contract: string, step?: RoleStepOf<A>): string {
  const defined = resolveStep(services.config, services.agents, agent, step).systemPrompt;
  return `${defined ?? defaultSystem[agent]}\n\n${contract}`;
}

/** The model settings of an agent's calls, or of one role step: `agents.<agent>` with agents.yaml over it. */
export function stepSettings<A extends LlmAgent>(services: RunServices, agent: A, step?: RoleStepOf<A>): Config['agents'][A] {
  return resolveStep(services.config, services.agents, agent, step).settings;
}

/**
 * What each call must answer with: the shape rendered from the reply's schema (actors/replies.ts),
 * then the few instructions a schema cannot say.
 */
export const contracts = {
  clarify: `${replies.clarify.contract}\nList as assumptions the answers you chose for anything ambiguous; a person may answer your questions, otherwise your assumptions stand.`,
  plan: `${replies.plan.contract}\nIds T1, T2, ... in the order the tasks must be done; each task small enough for one pull request.`,
  review: `${replies.review.contract}\nRequest changes only for unmet acceptance criteria or real defects, and say exactly what to change.`,
  change: `${replies.change.contract}\nPaths are relative to the repository root; each file is written whole.`,
  changeWithTools:
    'You work in the task\'s own worktree with tools: read_file, write_file, edit_file, list_files, search, run_command ' +
    '(tests and linters; no shell) and git_diff. Make the change, run the tests, then give your final answer.\n' +
    `${replies.change.contract}\n"files" may be empty when you already wrote everything with the tools.`,
  analyze: replies.analyze.contract,
};

export function describeTask(task: TaskRecord): string {
  return [
    `Task ${task.id} (${task.type}): ${task.title}`,
    task.description,
    'Acceptance criteria:',
    ...task.acceptanceCriteria.map((criterion) => `- ${criterion}`),
  ].join('\n');
}

/** Commands already announced as detected, per run, so the progress says it once. */
const announced = new WeakMap<RunServices, Set<string>>();

/**
 * The project's test command: `project.test_command`, else the one the repository at `dir`
 * names (package.json scripts.test, pytest, go test, cargo test, make test), said once when found.
 */
export function testCommandFor(services: RunServices, dir: string): DetectedTestCommand | undefined {
  const configured = services.config.project.test_command;
  if (configured) return { command: configured, from: 'project.test_command' };
  const detected = detectTestCommand(dir);
  if (detected) {
    const seen = announced.get(services) ?? new Set<string>();
    announced.set(services, seen);
    if (!seen.has(detected.command)) {
      seen.add(detected.command);
      services.progress(`tests: \`${detected.command}\` (detected from ${detected.from}; set project.test_command to choose another)`);
    }
  }
  return detected;
}

export function projectLine(services: RunServices): string {
  const project = services.config.project;
  const test = services.config.project.test_command ?? detectTestCommand(services.target)?.command;
  const tests = test ? `tests run with \`${test}\`` : `the repository has no test command yet: set one up (${LOOKED_FOR})`;
  return `Project: ${project.name} (${project.type}, ${project.language}); ${tests}.`;
}
