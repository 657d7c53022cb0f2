import { resolveStep, type Config, type LlmAgent, type RoleStepOf } from '../config/index.ts';
import type { TaskRecord } from '../services/store/types.ts';
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

export const contracts = {
  clarify:
    'Answer with a JSON object in a ```json block: {"summary": string, "assumptions": string[], "questions": string[]}. ' +
    'The run is unattended: list as assumptions the answers you chose for anything ambiguous.',
  plan:
    'Answer with a JSON object in a ```json block: {"tasks": [{"id": "T1", "title": string, "type": ' +
    '"feature"|"fix"|"docs"|"test"|"refactor"|"perf"|"chore", "description": string, "acceptance_criteria": string[], ' +
    '"depends_on": string[]}]}. Ids T1, T2, ... in the order they must be done.',
  review:
    'Answer with a JSON object in a ```json block: {"verdict": "approve"|"request_changes", "summary": string, ' +
    '"comments": string[]}. Request changes only for unmet acceptance criteria or real defects; say exactly what to change.',
  change:
    'Answer with a JSON object in a ```json block: {"summary": string, "files": [{"path": string, "content": string}], ' +
    '"delete": string[]}. Paths are relative to the repository root; each file is written whole.',
  changeWithTools:
    'You work in the task\'s own worktree with tools: read_file, write_file, edit_file, list_files, search, run_command ' +
    '(tests and linters; no shell) and git_diff. Make the change, run the tests, then answer with a JSON object in a ```json ' +
    'block: {"summary": string, "files": [{"path": string, "content": string}], "delete": string[]}; "files" may be empty ' +
    'when you already wrote everything with the tools.',
  analyze:
    'Answer with a JSON object in a ```json block: {"proposals": [{"title": string, "angle": "performance"|"code_quality"|' +
    '"ux"|"testing"|"documentation"|"architecture", "description": string, "acceptance_criteria": string[], ' +
    '"impact": 1-5, "effort": 1-5, "risk": 1-5}]}. An empty list is a fine answer when nothing is worth doing.',
};

export function describeTask(task: TaskRecord): string {
  return [
    `Task ${task.id} (${task.type}): ${task.title}`,
    task.description,
    'Acceptance criteria:',
    ...task.acceptanceCriteria.map((criterion) => `- ${criterion}`),
  ].join('\n');
}

export function projectLine(services: RunServices): string {
  const project = services.config.project;
  return `Project: ${project.name} (${project.type}, ${project.language}); tests run with \`${project.test_command}\`.`;
}
