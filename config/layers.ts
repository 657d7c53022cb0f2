import type { FieldPath } from './issues.ts';

/** Partial settings from one source; later layers override earlier ones field by field. */
export interface Layer {
  /** Named in error messages: a file label, an environment variable, a flag. */
  readonly source: string;
  readonly values: Readonly<Record<string, unknown>>;
  /** True for an environment variable or flag: it sets one field, so messages need not name it. */
  readonly namesField?: boolean;
}

/** Who set a field. */
export interface Attribution {
  readonly source: string;
  readonly namesField: boolean;
}

export interface Merged {
  readonly values: Record<string, unknown>;
  /** The source that set the deepest recorded prefix of `path`; `fallback` when none did. */
  sourceOf(path: FieldPath): Attribution;
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

const keyOf = (path: FieldPath): string => path.map(String).join('\u0000');

/**
 * Deep-merges layers in order, remembering who set each field so that one zod validation of
 * the result can still blame the right file, variable or flag. Mappings merge; lists and
 * scalars replace. `null` counts as unset: YAML gives null for a key whose children are all
 * commented out, which means "use the defaults".
 */
export function mergeLayers(layers: readonly Layer[], fallback = 'defaults'): Merged {
  const values: Record<string, unknown> = {};
  const sources = new Map<string, Attribution>();

  const mergeInto = (
    target: Record<string, unknown>,
    layer: Readonly<Record<string, unknown>>,
    source: Attribution,
    path: FieldPath,
  ): void => {
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined || value === null) continue;
      const at = [...path, key];
      const existing = Object.hasOwn(target, key) ? target[key] : undefined;
      if (isMapping(value)) {
        if (existing === undefined) {
          setOwn(target, key, {});
          // A mapping belongs to whoever introduced it: a missing required field inside it is theirs.
          sources.set(keyOf(at), source);
        } else if (!isMapping(existing)) {
          // Keep the earlier non-mapping so validation reports it against its own source.
          continue;
        }
        mergeInto(target[key] as Record<string, unknown>, value, source, at);
      } else {
        setOwn(target, key, value);
        sources.set(keyOf(at), source);
      }
    }
  };

  for (const layer of layers) {
    mergeInto(values, layer.values, { source: layer.source, namesField: layer.namesField === true }, []);
  }

  return {
    values,
    sourceOf(path) {
      for (let end = path.length; end > 0; end--) {
        const source = sources.get(keyOf(path.slice(0, end)));
        if (source !== undefined) return source;
      }
      return { source: fallback, namesField: false };
    },
  };
}

/** Plain assignment would let a "__proto__" key from a YAML file replace the prototype. */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A layer that sets one field, for an environment variable or a flag. */
export function fieldLayer(source: string, path: readonly string[], value: unknown): Layer {
  let values: unknown = value;
  for (let i = path.length - 1; i >= 0; i--) {
    const wrapper: Record<string, unknown> = {};
    setOwn(wrapper, path[i] ?? '', values);
    values = wrapper;
  }
  return { source, values: values as Record<string, unknown>, namesField: true };
}
