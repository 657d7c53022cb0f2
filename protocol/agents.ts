/**
 * The agents of a run, each named once. Every layer reads its names here: the actor id the
 * charts address (`everThinker`), the name its model calls, logs and recordings carry
 * (`ever-thinker`), its section in duo-agent.config.yaml (`ever_thinker`) and how people read it.
 * A leaf module: it imports nothing, and machines, services, the server and the CLI may import it.
 */

export const AGENTS = {
  moderator: { id: 'moderator', caller: 'moderator', configKey: 'moderator', display: 'Moderator' },
  techlead: { id: 'techlead', caller: 'techlead', configKey: 'techlead', display: 'TechLead' },
  monitor: { id: 'monitor', caller: null, configKey: 'monitor', display: 'Monitor' },
  everThinker: { id: 'everThinker', caller: 'ever-thinker', configKey: 'ever_thinker', display: 'Ever-Thinker' },
  /** Not a model agent: merges approved PRs one at a time, each brought up to date with the base and tested again. */
  mergeQueue: { id: 'mergeQueue', caller: null, configKey: 'merge_queue', display: 'Merge queue' },
} as const;

/** An agent as the actor system knows it (its systemId). */
export type AgentId = keyof typeof AGENTS;

/** The agents that call models: the name in the call journal, the replay format and the log files. */
export type CallerName = NonNullable<(typeof AGENTS)[AgentId]['caller']>;

/** The agents' sections of `agents:` in duo-agent.config.yaml. */
export type AgentConfigKey = (typeof AGENTS)[AgentId]['configKey'];

export const agentIds = Object.keys(AGENTS) as AgentId[];

/** The agents that call models, by their caller name. */
export const callerNames = agentIds.map((id) => AGENTS[id].caller).filter((name): name is CallerName => name !== null);

/** Which agent a caller name (`ever-thinker`) is. */
export function agentOfCaller(caller: CallerName): AgentId {
  return agentIds.find((id) => AGENTS[id].caller === caller) as AgentId;
}

/**
 * The file name of an actor's log (`<dir>/<name>.jsonl`): the caller name for the agents that
 * call models, else the actor's own id (`orchestrator`, `monitor`, `git`). Accepts any of an
 * agent's names, so `/api/logs?agent=everThinker`, `ever_thinker` and `ever-thinker` all find it.
 */
export function logName(name: string): string {
  const agent = agentIds.find((id) => id === name || AGENTS[id].caller === name || AGENTS[id].configKey === name);
  return agent === undefined ? name : (AGENTS[agent].caller ?? AGENTS[agent].id);
}

/** An agent's key in the monitoring API's JSON (`ever_thinker`: the seed's snake_case). */
export function apiName(id: AgentId): string {
  return AGENTS[id].configKey;
}

/**
 * The actors of a run as the actor system names them (their id and systemId). An agent with
 * several instances has one actor per slot: the TechLeads `techlead-1`..`techlead-N` (one per
 * task in flight, `limits.max_parallel_tasks`), the reviewers `moderator`, `moderator-2`, ...
 * (`agents.moderator.parallel_reviews`; the first is the Moderator that also clarifies and plans).
 * The ids are part of every snapshot: they never change shape.
 */
export const actorIds = {
  techlead: (slot: number): string => `techlead-${slot}`,
  reviewer: (slot: number): string => (slot === 1 ? 'moderator' : `moderator-${slot}`),
};

/** Which agent an actor id is (`techlead-2` is a TechLead), or undefined for an id no agent has. */
export function agentOfActor(actorId: string): AgentId | undefined {
  if ((agentIds as string[]).includes(actorId)) return actorId as AgentId;
  const slotted = /^(techlead|moderator)-([1-9][0-9]*)$/.exec(actorId);
  return slotted ? (slotted[1] as AgentId) : undefined;
}

/** How people read an actor: `TechLead 2`, `Moderator` (the only one), `Moderator 2`. */
export function actorDisplay(actorId: string): string {
  const agent = agentOfActor(actorId);
  if (agent === undefined) return actorId;
  const slot = /-([0-9]+)$/.exec(actorId)?.[1];
  return slot === undefined ? AGENTS[agent].display : `${AGENTS[agent].display} ${slot}`;
}
