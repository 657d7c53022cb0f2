import type { AnyActorRef, InspectionEvent } from 'xstate';
import { agentIds, agentOfActor } from '../protocol/agents.ts';
import { phaseOf } from '../services/store/checkpointer.ts';
import { chartOf, stateString, type ChartNode } from './chart.ts';

/** The actors every run has, by the id they are invoked with; TechLeads and extra reviewers come as they are spawned. */
export const agentNames = ['orchestrator', ...agentIds.filter((id) => id !== 'techlead')] as const;
/** An actor the dashboard draws: `orchestrator`, an agent (`moderator`), or a slot of one (`techlead-2`, `moderator-2`). */
export type AgentName = string;

export interface AgentView {
  /** `implementing.working`; `stopped` once the actor is gone; `not_started` before it is seen. */
  state: string;
  /** The snapshot value; null when the actor is gone or not seen yet. */
  value: unknown;
  status: string;
}

/** What the WebSocket hub pushes; built here, serialised later, off the actor system's path. */
export type LiveMessage =
  | { type: 'phase'; phase: string }
  | { type: 'agent'; agent: AgentName; state: string; value: unknown }
  | { type: 'message'; message: { from: string; to: string; type: string; payload: unknown } }
  | { type: 'alert'; level: string; kind: string; message: string; source: string }
  | { type: 'inspection'; event: Record<string, unknown> };

interface ActorState {
  value: unknown;
  /** `stateString(value)`, worked out once per snapshot: health asks for it on every request. */
  state: string;
  status: string;
  context: unknown;
}

const isAgentName = (id: unknown): id is AgentName => typeof id === 'string' && (id === 'orchestrator' || agentOfActor(id) !== undefined);
/** Namespaced inter-agent events (`task.assigned`), not XState's own (`xstate.init`). */
const isNamespaced = (type: string): boolean => /^[a-z_]+\.[a-z_.]+$/.test(type) && !type.startsWith('xstate.');
const alertEvents: Record<string, 'warning' | 'critical'> = {
  'monitor.limit_reached': 'critical',
  'agent.failed': 'critical',
  'agent.stalled': 'warning',
  'agent.stagnant': 'warning',
};

/** The id an actor was given, from the ref-like that inspection types promise. */
function idOf(ref: unknown): string | undefined {
  return typeof ref === 'object' && ref !== null && 'id' in ref && typeof ref.id === 'string' ? ref.id : undefined;
}

function field(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null && key in value ? (value as Record<string, unknown>)[key] : undefined;
}

/**
 * The run as the inspection stream shows it, kept in memory: definitions of the agents' charts,
 * each agent's latest state, the root's context. `observe` is on the actor system's hot path, so
 * it only records references and hands messages to `emit`; nothing here serialises or does I/O.
 */
export class LiveState {
  readonly definitions: Partial<Record<AgentName, ChartNode>> = {};
  /** Warnings and critical alerts seen on the event stream in this process. */
  alertsSeen = 0;
  private readonly actors = new Map<AgentName, ActorState>();
  private readonly charts = new WeakMap<object, ChartNode | null>();
  private root: AnyActorRef | undefined;
  private phase = 'starting';

  constructor(
    private readonly emit: (message: LiveMessage) => void,
    /** Whether anybody listens to raw inspection events; building them is skipped otherwise. */
    private readonly wantsInspection: () => boolean,
  ) {}

  observe(event: InspectionEvent): void {
    const id = idOf(event.actorRef);
    if (event.type === '@xstate.actor') this.onActor(event.actorRef, id);
    else if (event.type === '@xstate.snapshot') this.onSnapshot(id, event.snapshot, event.event.type);
    else if (event.type === '@xstate.event') this.onEvent(id, idOf(event.sourceRef), event.event);
  }

  /** Seeds definitions and states from a tree that was started before `observe` saw it. */
  attach(root: AnyActorRef): void {
    this.root = root;
    this.learn('orchestrator', root);
    const snapshot = root.getSnapshot() as { children?: Record<string, AnyActorRef> };
    for (const [id, child] of Object.entries(snapshot.children ?? {})) {
      if (isAgentName(id)) this.learn(id, child);
    }
  }

  get attached(): AnyActorRef | undefined {
    return this.root;
  }

  /** The root is attached and still running: interventions can reach it. */
  isLive(): boolean {
    return this.root !== undefined && this.rootStatus() === 'active';
  }

  rootStatus(): string {
    return this.actors.get('orchestrator')?.status ?? (this.root ? String(this.root.getSnapshot().status) : 'not_started');
  }

  currentPhase(): string {
    return this.phase;
  }

  agent(name: AgentName): AgentView {
    const actor = this.actors.get(name);
    if (!actor) return { state: 'not_started', value: null, status: 'not_started' };
    const gone = actor.status === 'stopped' || actor.status === 'error' || (name !== 'orchestrator' && this.rootGone());
    // A gone actor has no active state; a root that reached its final state keeps it (`stopped`, highlighted).
    return gone ? { state: 'stopped', value: null, status: actor.status } : { state: actor.state, value: actor.value, status: actor.status };
  }

  /** The actors seen so far, in the order the dashboard shows them: the root, the Moderator(s), the TechLeads, the rest. */
  actorNames(): AgentName[] {
    const rank = (id: string) => {
      const agent = id === 'orchestrator' ? 'orchestrator' : agentOfActor(id);
      return ['orchestrator', 'moderator', 'techlead', 'mergeQueue', 'monitor', 'everThinker'].indexOf(agent ?? '');
    };
    const slot = (id: string) => Number(/-([0-9]+)$/.exec(id)?.[1] ?? 1);
    return [...new Set([...agentNames, ...this.actors.keys()])].sort((a, b) => rank(a) - rank(b) || slot(a) - slot(b));
  }

  /** The root's latest context (tasks, slots, queues, outcome, improvementCycle, ...). */
  rootContext(): unknown {
    return this.actors.get('orchestrator')?.context;
  }

  agentContext(name: AgentName): unknown {
    return this.actors.get(name)?.context;
  }

  private rootGone(): boolean {
    const status = this.actors.get('orchestrator')?.status;
    return status !== undefined && status !== 'active';
  }

  private learn(name: AgentName, ref: AnyActorRef): void {
    const chart = this.chartFor(field(ref, 'logic'));
    if (chart) this.definitions[name] = chart;
    const snapshot = ref.getSnapshot() as { value?: unknown; status?: unknown; context?: unknown };
    this.record(name, snapshot);
  }

  private chartFor(logic: unknown): ChartNode | undefined {
    if (typeof logic !== 'object' || logic === null) return undefined;
    let chart = this.charts.get(logic);
    if (chart === undefined) {
      chart = chartOf(logic) ?? null;
      this.charts.set(logic, chart);
    }
    return chart ?? undefined;
  }

  private onActor(ref: unknown, id: string | undefined): void {
    if (!isAgentName(id)) return;
    const chart = this.chartFor(field(ref, 'logic'));
    if (!chart) return;
    this.definitions[id] = chart;
    if (this.wantsInspection()) {
      this.emit({ type: 'inspection', event: { type: '@xstate.actor', actorId: id, sessionId: field(ref, 'sessionId'), definition: chart } });
    }
  }

  private onSnapshot(id: string | undefined, snapshot: unknown, cause: string): void {
    if (!isAgentName(id)) return;
    this.record(id, snapshot);
    if (this.wantsInspection()) {
      this.emit({
        type: 'inspection',
        event: { type: '@xstate.snapshot', actorId: id, event: { type: cause }, status: field(snapshot, 'status'), value: field(snapshot, 'value') },
      });
    }
  }

  private record(name: AgentName, snapshot: unknown): void {
    const before = this.actors.has(name) ? this.agent(name).state : undefined;
    const wasGone = this.rootGone();
    const value = field(snapshot, 'value');
    this.actors.set(name, { value, state: stateString(value), status: String(field(snapshot, 'status') ?? 'active'), context: field(snapshot, 'context') });
    const after = this.agent(name);
    if (after.state !== before) this.emit({ type: 'agent', agent: name, state: after.state, value: after.value });
    if (name === 'orchestrator') {
      const phase = phaseOf(value);
      if (phase !== this.phase) {
        this.phase = phase;
        this.emit({ type: 'phase', phase });
      }
      // Children stop with the root; the stopped ones may not report it themselves.
      if (!wasGone && this.rootGone()) {
        for (const child of this.actors.keys()) {
          if (child !== 'orchestrator') this.emit({ type: 'agent', agent: child, state: 'stopped', value: null });
        }
      }
    }
  }

  private onEvent(to: string | undefined, from: string | undefined, event: { type: string }): void {
    if (this.wantsInspection()) {
      this.emit({ type: 'inspection', event: { type: '@xstate.event', actorId: to, sourceId: from, event } });
    }
    if (!isNamespaced(event.type)) return;
    // Ticks and replies of the agents' own helper actors are not conversation between agents.
    if (from !== undefined && !isAgentName(from)) return;
    const { type, ...payload } = event as Record<string, unknown>;
    this.emit({ type: 'message', message: { from: from ?? 'human', to: to ?? 'unknown', type: String(type), payload } });
    const level = event.type === 'health.alert' ? String(field(event, 'level') ?? 'warning') : alertEvents[event.type];
    if (level) {
      this.alertsSeen += 1;
      const text = field(event, 'message') ?? field(event, 'reason') ?? event.type;
      this.emit({ type: 'alert', level, kind: String(field(event, 'kind') ?? event.type), message: String(text), source: from ?? 'human' });
    }
  }
}
