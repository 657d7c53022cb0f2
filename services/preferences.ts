import fs from 'node:fs';
import path from 'node:path';
import { LowSync } from 'lowdb';
import { JSONFileSync } from 'lowdb/node';
import { z } from 'zod';

/** How one improvement idea ended, kept across runs. */
export interface IdeaOutcome {
  runId: string;
  taskId: string;
  title: string;
  angle: string | null;
  priority: number | null;
  /** `merged`, or why not: `rejected`, `failed`, `skipped`. */
  outcome: string;
  /** The measured magnitude of the improvement cycle the idea was part of, when it was measured. */
  impact?: number | null;
  at: string;
}

const fileSchema = z.object({ version: z.literal(1), improvements: z.array(z.looseObject({ title: z.string(), outcome: z.string() })) });

interface PreferencesFile {
  version: 1;
  improvements: IdeaOutcome[];
}

/**
 * `.duo-agent/preferences.json`: what people may read or edit by hand, never run state (DESIGN).
 * It remembers how the Ever-Thinker's ideas ended, so with `features.learning` a later run is
 * told which ideas were merged or turned down before. A file edited into nonsense is not fatal:
 * it is set aside and started again.
 */
export class Preferences {
  private readonly db;

  constructor(stateDirectory: string) {
    const file = path.join(stateDirectory, 'preferences.json');
    // Not lowdb's preset: it silently keeps data in memory whenever NODE_ENV is "test".
    this.db = new LowSync<PreferencesFile>(new JSONFileSync<PreferencesFile>(file), { version: 1, improvements: [] });
    try {
      this.db.read();
    } catch {
      // Not JSON any more (a hand edit gone wrong): keep it aside for its author, start afresh.
      fs.renameSync(file, `${file}.unreadable-${Date.now()}`);
      this.db.read();
    }
    if (!fileSchema.safeParse(this.db.data).success) this.db.data = { version: 1, improvements: [] };
  }

  /** Records the outcome of each improvement task of a run once (a re-run finish changes nothing). */
  record(outcomes: IdeaOutcome[]): void {
    const known = new Set(this.db.data.improvements.map((idea) => `${idea.runId}:${idea.taskId}`));
    const fresh = outcomes.filter((idea) => !known.has(`${idea.runId}:${idea.taskId}`));
    if (fresh.length === 0) return;
    this.db.data.improvements.push(...fresh);
    this.db.write();
  }

  /** The latest ideas, newest last, for a prompt. */
  recent(limit = 20): IdeaOutcome[] {
    return this.db.data.improvements.slice(-limit);
  }
}
