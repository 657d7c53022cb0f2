import { fromPromise } from 'xstate';
import type { AnalyzeInput, AnalyzeOutput } from '../machines/ever-thinker.machine.ts';
import { once } from '../services/effects.ts';
import type { NewTask } from '../services/store/types.ts';
import { formatFiles, readTree } from '../services/workspace.ts';
import { ask } from './ask.ts';
import { contracts, projectLine, stepSettings, systemPrompt } from './prompts.ts';
import { priorityOf, replies } from './replies.ts';
import type { RunServices } from './run-services.ts';
import { callKeys, stepKeys } from '../protocol/keys.ts';
import { learnedBonus } from '../services/improvement.ts';

const typeOfAngle: Record<string, string> = {
  performance: 'perf',
  code_quality: 'fix',
  ux: 'feature',
  testing: 'test',
  documentation: 'docs',
  architecture: 'refactor',
};

/** The Ever-Thinker's effect: one analysis of the merged code, its best proposals stored as tasks. */
export function everThinkerActors(services: RunServices) {
  const settings = stepSettings(services, 'ever_thinker');

  const analyze = fromPromise<AnalyzeOutput, AnalyzeInput>(async ({ input, signal }) => {
    const stepKey = stepKeys.analyze(input.cycle);
    const result = await once(
      services.store,
      services.runId,
      stepKey,
      async () => {
        const tasks = services.store.listTasks(services.runId);
        const tree = readTree(services.target);
        const past = services.config.features.learning ? (services.pastIdeas?.() ?? []) : [];
        const impactOf = (idea: (typeof past)[number]) => (typeof idea.impact === 'number' ? `, measured impact ${idea.impact.toFixed(2)}` : '');
        const learned = past.length
          ? `\n\nIdeas from earlier runs on this repository and how they ended (do not propose again what was turned down):\n${past.map((idea) => `- [${idea.outcome}${impactOf(idea)}] ${idea.title}`).join('\n')}`
          : '';
        const reply = await ask(services, {
          agent: 'ever-thinker',
          purpose: 'analyze',
          callKey: callKeys.analyze(input.cycle),
          system: systemPrompt(services, 'ever_thinker', contracts.analyze),
          prompt: `${projectLine(services)}\n\nRequirements:\n${services.requirements}\n\nDone so far:\n${tasks.map((task) => `- ${task.id} ${task.title}: ${task.status}`).join('\n')}\n\nThe code on ${services.git.baseBranch}:\n${formatFiles(tree.files)}\n\nImprovement cycle ${input.cycle}: what is worth improving?${learned}`,
          reply: replies.analyze,
          settings,
          signal,
        });
        // With learning on, how earlier ideas of the same angle ended, and what they measurably did, moves the rank.
        const ranked = reply.proposals
          .map((proposal) => {
            const learnt = past.length ? learnedBonus(proposal.angle, past) : 0;
            return { ...proposal, priority: priorityOf(proposal) + learnt, learnt };
          })
          .sort((a, b) => b.priority - a.priority);
        const accepted = ranked.filter((proposal) => proposal.priority >= input.minPriority).slice(0, settings.max_proposals_per_cycle);
        // Ids continue the target's numbering; computed before the tasks are stored, in the same step.
        const first = services.store.nextTaskNumber();
        const newTasks: NewTask[] = accepted.map((proposal, index) => ({
          id: `T${first + index}`,
          title: proposal.title,
          type: typeOfAngle[proposal.angle] ?? 'chore',
          description: proposal.description,
          acceptanceCriteria: proposal.acceptance_criteria,
          dependsOn: [],
          origin: 'improvement',
          angle: proposal.angle,
          priority: proposal.priority,
        }));
        return { newTasks, considered: ranked.map((proposal) => ({ title: proposal.title, angle: proposal.angle, priority: proposal.priority, learnt: proposal.learnt })) };
      },
      (outcome) => services.store.addTasks(services.runId, outcome.newTasks),
    );
    services.progress(`improvement cycle ${input.cycle}: ${result.considered.length} idea(s), ${result.newTasks.length} worth a task (priority >= ${input.minPriority})`);
    for (const idea of result.considered) {
      const learnt = idea.learnt ? ` (${idea.learnt > 0 ? '+' : ''}${idea.learnt} learnt from earlier runs)` : '';
      services.progress(`  ${idea.priority >= input.minPriority ? '+' : '-'} [${idea.angle}, priority ${idea.priority}${learnt}] ${idea.title}`);
    }
    return {
      accepted: result.newTasks.map((task) => ({ id: task.id, type: task.type })),
      considered: result.considered.length,
      bestPriority: result.considered[0]?.priority ?? null,
    };
  });

  return { analyze };
}
