import { configSchema } from '../../config/index.ts';
import { ContextManager, contextSettings } from '../../services/context/context-manager.ts';
import type { TreeSource } from '../../services/context/repo-map.ts';

const noRepository: TreeSource = {
  commitOf: () => Promise.reject(new Error('this test has no repository to map')),
  listTree: () => Promise.reject(new Error('this test has no repository to map')),
  treeChanges: () => Promise.reject(new Error('this test has no repository to map')),
};

/** The context manager of a run with these settings (the defaults otherwise), for tests of `ask` that map no repository. */
export function contextFor(settings: { limits?: Record<string, unknown>; context?: Record<string, unknown> } = {}, trees: TreeSource = noRepository): ContextManager {
  return new ContextManager(contextSettings(configSchema.parse(settings)), trees);
}
