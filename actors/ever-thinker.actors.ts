import { fromPromise } from 'xstate';
import type { AnalyzeInput, AnalyzeOutput } from '../machines/ever-thinker.machine.ts';
import { once } from '../services/effects.ts';
import type { NewTask } from '../services/store/types.ts';
import { estimateTokens } from '../services/llm/token-count.ts';
import { plural } from '../services/text.ts';
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

/** Titles of merged tasks the analysis lists, newest first; the count says how many more there are. */
const LISTED_MERGED = 30;
/** Tasks that did not merge, listed by title. */
const LISTED_UNMERGED = 10;

/** The Ever-Thinker's effect: one analysis of the merged code, its best proposals stored as tasks. */
export function everThinkerActors(services: RunServices) {
  const settings = stepSettings(services, 'ever_thinker');

  /**
   * What the analysis is shown: the requirements, the merged tasks' titles (the latest
   * LISTED_MERGED), what was measured (task outcomes and review rounds, the last test run, what
   * the map counts) and the repository map of the base branch, not every task ever planned nor
   * the code itself: the model reads neither whole and both grow with the run.
   */
  async function analyzePrompt(cycle: number, learned: string): Promise<string> {
    // A task merged by the step that just ended may not be projected yet: its PR says so first.
    const tasks = services.store.tasks.list(services.runId).map((task) =>
      task.status !== 'merged' && services.store.pullRequests.forTask(services.runId, task.id)?.status === 'merged' ? { ...task, status: 'merged' as const } : task);
    const merged = tasks.filter((task) => task.status === 'merged');
    const unmerged = tasks.filter((task) => task.status !== 'merged' && task.status !== 'pending');
    const reworked = merged.filter((task) => task.attempts > 1);
    const count = (status: string) => tasks.filter((task) => task.status === status).length;
    const lastMerged = merged.at(-1);
    const lastTests = lastMerged ? services.store.testRuns.latest(services.runId, lastMerged.id, lastMerged.attempts) : undefined;
    const signals = [
      `tasks: ${merged.length} merged, ${count('rejected')} rejected, ${count('failed')} failed, ${count('held')} held, ${count('skipped')} skipped; ${reworked.length} merged after more than one review round${reworked.length > 0 ? ` (${reworked.slice(-5).map((task) => task.id).join(', ')})` : ''}`,
      ...(lastTests ? [`tests: \`${lastTests.command}\` ${lastTests.passed ? 'passed' : 'failed'} in ${(lastTests.durationMs / 1000).toFixed(1)} s on the last merged task (${lastTests.taskId})`] : []),
    ];
    const before = [
      projectLine(services),
      `Requirements:\n${services.requirements}`,
      `Merged so far: ${plural(merged.length, 'task')}${merged.length > LISTED_MERGED ? ` (the latest ${LISTED_MERGED}; ${merged.length - LISTED_MERGED} earlier)` : ''}:\n${merged.slice(-LISTED_MERGED).reverse().map((task) => `- ${task.id} ${task.title}`).join('\n') || '- none'}`,
      ...(unmerged.length > 0 ? [`Not merged:\n${unmerged.slice(-LISTED_UNMERGED).map((task) => `- ${task.id} ${task.title}: ${task.status}`).join('\n')}`] : []),
    ].join('\n\n');
    const query = `${services.requirements}\n${merged.slice(-LISTED_MERGED).map((task) => task.title).join('\n')}`;
    const project = await services.context.forProject(services.target, services.git.baseBranch, query, estimateTokens(before) + 400);
    const measured = `Measured:\n${[...signals, ...project.signals].map((line) => `- ${line}`).join('\n')}`;
    return `${before}\n\n${measured}\n\n${project.map}\n\nImprovement cycle ${cycle}: what is worth improving?${learned}`;
  }

  const analyze = fromPromise<AnalyzeOutput, AnalyzeInput>(async ({ input, signal }) => {
    const stepKey = stepKeys.analyze(input.cycle);
    const result = await once(
      services.store,
      services.runId,
      stepKey,
      async () => {
        const past = services.config.features.learning ? (services.pastIdeas?.() ?? []) : [];
        const impactOf = (idea: (typeof past)[number]) => (typeof idea.impact === 'number' ? `, measured impact ${idea.impact.toFixed(2)}` : '');
        const learned = past.length
          ? `\n\nIdeas from earlier runs on this repository and how they ended (do not propose again what was turned down):\n${past.map((idea) => `- [${idea.outcome}${impactOf(idea)}] ${idea.title}`).join('\n')}`
          : '';
        const prompt = await once(services.store, services.runId, stepKeys.prompt(callKeys.analyze(input.cycle)), () => analyzePrompt(input.cycle, learned));
        const reply = await ask(services, {
          agent: 'ever-thinker',
          purpose: 'analyze',
          callKey: callKeys.analyze(input.cycle),
          system: systemPrompt(services, 'ever_thinker', contracts.analyze),
          prompt,
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
        const first = services.store.tasks.nextNumber();
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
      (outcome) => services.store.tasks.add(services.runId, outcome.newTasks),
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
