import { ConfigError } from './config-error.ts';
import type { AgentDefinition, AgentDefinitions, Config } from './schema.ts';

/**
 * What agents.yaml means. The seed's file defines agents by role (`type: generator`,
 * `type: reviewer`); Moderator's agents are the TechLead and the Moderator, so each role
 * configures the step that plays it. From lowest to highest precedence, for one model call:
 *
 *   1. `agents.<agent>` in duo-agent.config.yaml (and the environment and flags over it):
 *      model, temperature, max_tokens, backup_model; the built-in system prompt;
 *   2. the agents.yaml entry named after the agent (`moderator`, `techlead`, `ever_thinker`):
 *      its system_prompt replaces the built-in one, and its model, temperature and max_tokens
 *      (when given) replace the config's, for every call of that agent;
 *   3. the agents.yaml entry whose `type` plays the step: `generator` for the TechLead's
 *      implement and revise calls, `reviewer` for the Moderator's review calls.
 *
 * Any other entry would be a specialist (`features.specialists`), which this version does not
 * implement: it is reported by `agentDefinitionWarnings`, never silently dropped.
 */

/** The agents with model settings under `agents.*` (the monitor makes no model calls). */
export type LlmAgent = 'moderator' | 'techlead' | 'ever_thinker';

const LLM_AGENTS: readonly LlmAgent[] = ['moderator', 'techlead', 'ever_thinker'];

/** The steps a role configures, with the agent whose step it is and the agents.yaml `type`. */
export const ROLE_STEPS = {
  implement: { agent: 'techlead', type: 'generator' },
  revise: { agent: 'techlead', type: 'generator' },
  review: { agent: 'moderator', type: 'reviewer' },
} as const;

export type RoleStep = keyof typeof ROLE_STEPS;
/** The role steps of agent `A` (`never` for an agent no role configures). */
export type RoleStepOf<A extends LlmAgent> = { [S in RoleStep]: (typeof ROLE_STEPS)[S]['agent'] extends A ? S : never }[RoleStep];

const ROLE_TYPES: ReadonlySet<string> = new Set(Object.values(ROLE_STEPS).map((step) => step.type));

export interface ResolvedStep<A extends LlmAgent> {
  /** The system prompt agents.yaml gives this call; undefined keeps the built-in one. */
  systemPrompt: string | undefined;
  /** `agents.<agent>` of the config with the definitions' model settings over it. */
  settings: Config['agents'][A];
  /** The agents.yaml keys that applied, lowest precedence first (for messages and tests). */
  definitions: string[];
}

/** The entry that plays a role: the first with that `type` (the loader refuses a second). */
function roleDefinition(agents: AgentDefinitions, type: string): [string, AgentDefinition] | undefined {
  return Object.entries(agents).find(([, definition]) => definition.type === type);
}

/**
 * The system prompt and model settings of one agent's calls, or of one of its role steps.
 * Pure: the same config and definitions give the same answer, on resume too (both are stored).
 */
export function resolveStep<A extends LlmAgent>(config: Config, agents: AgentDefinitions, agent: A, step?: RoleStepOf<A>): ResolvedStep<A> {
  const layers: [string, AgentDefinition][] = [];
  const named = agents[agent];
  if (named) layers.push([agent, named]);
  if (step !== undefined) {
    const role = roleDefinition(agents, ROLE_STEPS[step].type);
    if (role && role[0] !== agent) layers.push(role);
  }
  let settings: Config['agents'][A] = config.agents[agent];
  let systemPrompt: string | undefined;
  for (const [, definition] of layers) {
    systemPrompt = definition.system_prompt;
    settings = {
      ...settings,
      ...(definition.model !== undefined ? { model: definition.model } : {}),
      ...(definition.temperature !== undefined ? { temperature: definition.temperature } : {}),
      ...(definition.max_tokens !== undefined ? { max_tokens: definition.max_tokens } : {}),
    };
  }
  return { systemPrompt, settings, definitions: layers.map(([key]) => key) };
}

/** Refuses a file in which two entries claim one role: which one applies would be a guess. */
export function checkRoles(agents: AgentDefinitions, source: string): void {
  for (const type of ROLE_TYPES) {
    const claimed = Object.entries(agents).filter(([, definition]) => definition.type === type).map(([key]) => key);
    if (claimed.length > 1) {
      const names = claimed.map((key) => `"${key}"`).join(' and ');
      throw ConfigError.of(source, 'agents', `${names} ${claimed.length === 2 ? 'both' : 'all'} have type ${type}; keep one (specialist agents are not implemented)`);
    }
  }
}

/**
 * One line per thing that is set but does nothing in this version, for the run to print once
 * at its start: the specialists flag, and agents.yaml entries that configure no step.
 */
export function agentDefinitionWarnings(config: Config, agents: AgentDefinitions): string[] {
  const warnings: string[] = [];
  if (config.features.specialists) {
    warnings.push(
      'features.specialists (DUO_AGENT_ENABLE_SPECIALISTS) is on, but specialist agents are not implemented in this version: no agent is spawned per task from agents.yaml',
    );
  }
  for (const [key, definition] of Object.entries(agents)) {
    if ((LLM_AGENTS as readonly string[]).includes(key) || ROLE_TYPES.has(definition.type)) continue;
    warnings.push(
      `agents.yaml: agents.${key} (type ${definition.type}) is not used: only type generator (the TechLead's implementation), type reviewer (the Moderator's review) and the entries named moderator, techlead and ever_thinker configure agents; specialists are not implemented`,
    );
  }
  return warnings;
}
