import type { AnyStateNode, AnyTransitionDefinition } from 'xstate';

/**
 * A statechart as the dashboard draws it: plain JSON read from a machine's state nodes, so the
 * server never imports `machines/` (DESIGN: statecharts come from inspection definitions).
 */
export interface ChartNode {
  key: string;
  /** Dot path from the root, as in `data-state`: `implementing.working`; '' for the root. */
  path: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  description?: string;
  initial?: string;
  states: ChartNode[];
  transitions: ChartTransition[];
  /** Ids of the actors a state invokes while it is active. */
  invokes: string[];
}

export interface ChartTransition {
  /** The event, readably: `pr.merged`, `always`, `after 5000`, `done: askApproval`. */
  event: string;
  /** Target state paths; empty for a transition that only runs actions. */
  targets: string[];
  guard?: string;
}

/** The machine definition behind an actor's logic, or undefined for promise/callback logic. */
export function chartOf(logic: unknown): ChartNode | undefined {
  if (typeof logic !== 'object' || logic === null || !('root' in logic) || !('toJSON' in logic)) return undefined;
  const root = (logic as { root: unknown }).root;
  if (typeof root !== 'object' || root === null || !('states' in root) || !('transitions' in root)) return undefined;
  return nodeOf(root as AnyStateNode);
}

function nodeOf(node: AnyStateNode): ChartNode {
  const transitions: ChartTransition[] = [];
  for (const list of node.transitions.values()) transitions.push(...list.map(transitionOf));
  for (const always of node.always ?? []) transitions.push(transitionOf(always));
  const initial = node.type === 'compound' ? node.initial.target[0]?.key : undefined;
  return {
    key: node.key,
    path: node.path.join('.'),
    type: node.type,
    ...(node.description ? { description: node.description } : {}),
    ...(initial ? { initial } : {}),
    states: Object.values(node.states).map(nodeOf),
    transitions,
    invokes: node.invoke.map((invoke) => invoke.id),
  };
}

function transitionOf(transition: AnyTransitionDefinition): ChartTransition {
  const guard = guardName(transition.guard);
  return {
    event: eventName(String(transition.eventType)),
    targets: (transition.target ?? []).map((target) => target.path.join('.')),
    ...(guard ? { guard } : {}),
  };
}

function eventName(type: string): string {
  if (type === '') return 'always';
  const after = /^xstate\.after\.(\d+)\./.exec(type);
  if (after) return `after ${after[1]}`;
  const done = /^xstate\.(done|error)\.actor\.(.+)$/.exec(type);
  if (done) return `${done[1]}: ${done[2]}`;
  return type;
}

/** `hasPendingTask`; XState's `and`/`or`/`not` helpers keep their parts in `guards`: `and(not(paused), hasPendingTask)`. */
function guardName(guard: unknown): string | undefined {
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    const parts = (guard as { guards?: unknown }).guards;
    if (Array.isArray(parts)) return `${guard.name}(${parts.map((part) => guardName(part) ?? 'guard').join(', ')})`;
    return guard.name || 'guard';
  }
  if (typeof guard === 'object' && guard !== null && 'type' in guard && typeof guard.type === 'string') return guard.type;
  return undefined;
}

/** Every active state path of a snapshot value: `{ running: 'watching' }` -> `running`, `running.watching`. */
export function activePaths(value: unknown, prefix = ''): string[] {
  if (typeof value === 'string') return [prefix + value];
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) => [prefix + key, ...activePaths(child, `${prefix}${key}.`)]);
}

/** An agent's state as one string: the leaf paths, `running.watching`; parallel regions joined by `, `. */
export function stateString(value: unknown): string {
  const paths = activePaths(value);
  const leaves = paths.filter((path) => !paths.some((other) => other.startsWith(`${path}.`)));
  return leaves.join(', ') || 'unknown';
}
