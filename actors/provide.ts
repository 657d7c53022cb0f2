import { fromPromise } from 'xstate';
import { everThinkerMachine } from '../machines/ever-thinker.machine.ts';
import { mergeQueueMachine } from '../machines/merge-queue.machine.ts';
import { moderatorMachine } from '../machines/moderator.machine.ts';
import { monitorMachine } from '../machines/monitor.machine.ts';
import { orchestratorMachine } from '../machines/orchestrator.machine.ts';
import { techleadMachine } from '../machines/techlead.machine.ts';
import type { RunClock } from '../services/run-clock.ts';
import { everThinkerActors } from './ever-thinker.actors.ts';
import { mergeQueueActors } from './merge-queue.actors.ts';
import { moderatorActors } from './moderator.actors.ts';
import type { RunServices } from './run-services.ts';
import { techleadActors } from './techlead.actors.ts';
import { tickerActor } from './ticker.ts';

export type AskApproval = () => Promise<{ approved: boolean; reason?: string }>;

/** The orchestrator with every named effect filled in from the run's services. */
export function provideRun(services: RunServices, clock: RunClock, askApproval: AskApproval) {
  return orchestratorMachine.provide({
    actors: {
      moderator: moderatorMachine.provide({ actors: moderatorActors(services) }),
      techlead: techleadMachine.provide({ actors: techleadActors(services) }),
      mergeQueue: mergeQueueMachine.provide({ actors: mergeQueueActors(services) }),
      everThinker: everThinkerMachine.provide({ actors: everThinkerActors(services) }),
      monitor: monitorMachine.provide({ actors: { ticker: tickerActor(services, clock) } }),
      askApproval: fromPromise(() => askApproval()),
    },
  });
}
