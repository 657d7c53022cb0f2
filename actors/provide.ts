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
import { runSampler } from './run-sampler.ts';
import { tickerActor } from './ticker.ts';
import { improvementActors } from './improvement-signals.ts';
import { messageOf } from '../errors.ts';

/** Asks a person to approve the plan; `signal` aborts when the run stops asking (an answer elsewhere, a timeout). */
export type AskApproval = (signal: AbortSignal) => Promise<{ approved: boolean; reason?: string }>;

/** The orchestrator with every named effect filled in from the run's services. */
export function provideRun(services: RunServices, clock: RunClock, askApproval: AskApproval) {
  return orchestratorMachine.provide({
    actors: {
      moderator: moderatorMachine.provide({ actors: moderatorActors(services) }),
      techlead: techleadMachine.provide({ actors: techleadActors(services) }),
      mergeQueue: mergeQueueMachine.provide({ actors: mergeQueueActors(services) }),
      everThinker: everThinkerMachine.provide({ actors: { ...everThinkerActors(services), ...improvementActors(services) } }),
      monitor: monitorMachine.provide({
        actors: {
          ticker: tickerActor({
            ...runSampler(services, clock),
            onError: (error) => services.logs.for('monitor').warn({ error: messageOf(error) }, 'a measurement failed'),
          }),
        },
      }),
      askApproval: fromPromise(({ signal }) => askApproval(signal)),
    },
  });
}
