import { createHash } from 'node:crypto';
import { everThinkerMachine } from '../machines/ever-thinker.machine.ts';
import { moderatorMachine } from '../machines/moderator.machine.ts';
import { monitorMachine } from '../machines/monitor.machine.ts';
import { orchestratorMachine } from '../machines/orchestrator.machine.ts';
import { techleadMachine } from '../machines/techlead.machine.ts';

/**
 * Bumped when what a snapshot means changes (context shapes, event payloads) in a way the
 * machine definitions alone do not show. A run is only resumed by the version that wrote it.
 */
export const snapshotVersion = 1;

/** A hash of every statechart's definition: a snapshot only restores into the charts that made it. */
export function machineFingerprint(): string {
  const hash = createHash('sha256');
  for (const machine of [orchestratorMachine, moderatorMachine, techleadMachine, monitorMachine, everThinkerMachine]) {
    hash.update(JSON.stringify(machine.toJSON()));
  }
  return hash.digest('hex').slice(0, 16);
}
