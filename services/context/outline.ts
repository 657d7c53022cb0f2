import { createRequire } from 'node:module';
import type * as TypeScript from 'typescript';

/**
 * A source file's top-level declarations, for the repository map: names with their parameters
 * (`parse(input, options)`, `class Store { open, close }`, `interface Task`), in source order.
 *
 * JavaScript and TypeScript are read with TypeScript's own parser (`createSourceFile`, which never
 * throws: a file with a syntax error still gives the declarations it could read). It costs
 * ~300-400 ms to load here, so it is loaded at the first JS/TS file, never at start-up; then a
 * small file parses in well under a millisecond. Other languages get a line scan of the usual
 * declaration forms at the start of a line (`def`, `class`, `func`, `fn`, ...): honest but
 * shallow, and labelled as such in the map (`parser: 'line-scan'`).
 */

export type OutlineParser = 'typescript' | 'line-scan' | 'none';

export interface Outline {
  declarations: string[];
  parser: OutlineParser;
}

/** Past this many names a file's outline says how many more there are. */
const MAX_DECLARATIONS = 12;
/** Members shown inside a class's braces. */
const MAX_MEMBERS = 6;
/** Larger files are listed without declarations: generated or vendored code, not worth the parse. */
export const MAX_OUTLINE_BYTES = 256 * 1024;

const SCRIPT_KINDS: Record<string, 'TS' | 'TSX' | 'JS' | 'JSX'> = {
  '.ts': 'TS', '.mts': 'TS', '.cts': 'TS', '.tsx': 'TSX', '.js': 'JS', '.mjs': 'JS', '.cjs': 'JS', '.jsx': 'JSX',
};

let typescript: typeof TypeScript | undefined;

function loadTypeScript(): typeof TypeScript {
  typescript ??= createRequire(import.meta.url)('typescript') as typeof TypeScript;
  return typescript;
}

function extensionOf(file: string): string {
  const base = file.slice(file.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  if (base.endsWith('.d.ts')) return '.ts';
  return dot <= 0 ? '' : base.slice(dot).toLowerCase();
}

/** The outline of one file's text; `none` for a language neither the parser nor a scan knows. */
export function outlineOf(file: string, content: string): Outline {
  if (content.length > MAX_OUTLINE_BYTES) return { declarations: [], parser: 'none' };
  const extension = extensionOf(file);
  const kind = SCRIPT_KINDS[extension];
  if (kind) return { declarations: capped(scriptDeclarations(file, content, kind)), parser: 'typescript' };
  const scan = LINE_SCANS.find((candidate) => candidate.extensions.includes(extension));
  if (scan) return { declarations: capped(scanLines(content, scan.patterns)), parser: 'line-scan' };
  return { declarations: [], parser: 'none' };
}

function capped(names: string[]): string[] {
  const unique = [...new Set(names)];
  return unique.length <= MAX_DECLARATIONS ? unique : [...unique.slice(0, MAX_DECLARATIONS), `+${unique.length - MAX_DECLARATIONS} more`];
}

function scriptDeclarations(file: string, content: string, kind: 'TS' | 'TSX' | 'JS' | 'JSX'): string[] {
  const ts = loadTypeScript();
  const source = ts.createSourceFile(file, content, ts.ScriptTarget.Latest, false, ts.ScriptKind[kind]);
  const names: string[] = [];
  const bindingNames = (name: TypeScript.BindingName): string[] =>
    ts.isIdentifier(name) ? [name.text] : name.elements.flatMap((element) => (ts.isOmittedExpression(element) ? [] : bindingNames(element.name)));
  // Names only: no types, no defaults (`run(argv, { env, stdout })`), so a signature stays a few tokens.
  const paramName = (name: TypeScript.BindingName): string =>
    ts.isIdentifier(name) ? name.text : ts.isObjectBindingPattern(name) ? `{ ${bindingNames(name).join(', ')} }` : `[${bindingNames(name).join(', ')}]`;
  const params = (list: TypeScript.NodeArray<TypeScript.ParameterDeclaration>) =>
    `(${list.map((param) => `${param.dotDotDotToken ? '...' : ''}${paramName(param.name)}`).join(', ')})`;

  for (const statement of source.statements) {
    if (ts.isFunctionDeclaration(statement)) {
      names.push(`${statement.name?.text ?? 'default'}${params(statement.parameters)}`);
    } else if (ts.isClassDeclaration(statement)) {
      const members = statement.members
        .filter((member) => member.name !== undefined && !ts.isConstructorDeclaration(member))
        .filter((member) => !(ts.getCombinedModifierFlags(member as TypeScript.Declaration) & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)))
        .map((member) => (member.name && (ts.isIdentifier(member.name) || ts.isStringLiteral(member.name)) ? member.name.text : undefined))
        .filter((name): name is string => name !== undefined && !name.startsWith('#'));
      const shown = members.slice(0, MAX_MEMBERS).join(', ') + (members.length > MAX_MEMBERS ? `, +${members.length - MAX_MEMBERS}` : '');
      names.push(`class ${statement.name?.text ?? 'default'}${shown ? ` { ${shown} }` : ''}`);
    } else if (ts.isInterfaceDeclaration(statement)) {
      names.push(`interface ${statement.name.text}`);
    } else if (ts.isTypeAliasDeclaration(statement)) {
      names.push(`type ${statement.name.text}`);
    } else if (ts.isEnumDeclaration(statement)) {
      names.push(`enum ${statement.name.text}`);
    } else if (ts.isModuleDeclaration(statement)) {
      names.push(`namespace ${statement.name.getText(source)}`);
    } else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) {
        const init = declaration.initializer;
        const callable = init && (ts.isArrowFunction(init) || ts.isFunctionExpression(init)) ? params(init.parameters) : '';
        for (const name of bindingNames(declaration.name)) names.push(`${name}${callable}`);
      }
    } else if (ts.isExportAssignment(statement)) {
      names.push('export default');
    } else if (ts.isExportDeclaration(statement)) {
      const from = statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier) ? ` from ${statement.moduleSpecifier.text}` : '';
      const clause = statement.exportClause;
      if (!clause) names.push(`export *${from}`);
      else if (ts.isNamespaceExport(clause)) names.push(`export * as ${clause.name.getText(source)}${from}`);
      else names.push(`export { ${clause.elements.map((element) => element.name.getText(source)).join(', ')} }${from}`);
    } else if (ts.isExpressionStatement(statement) && ts.isBinaryExpression(statement.expression) && statement.expression.operatorToken.kind === ts.SyntaxKind.EqualsToken) {
      // CommonJS: `module.exports = ...`, `exports.name = ...`, `module.exports.name = ...`.
      const target = statement.expression.left.getText(source);
      const match = /^(?:module\.)?exports(?:\.([A-Za-z_$][\w$]*))?$/.exec(target);
      if (match) names.push(match[1] ?? 'module.exports');
    }
  }
  return names;
}

interface LineScan {
  extensions: string[];
  /** Each pattern's first group is the declaration as shown. */
  patterns: RegExp[];
}

/**
 * Declarations at the start of a line (top level, or one indentation step for class members where
 * a language nests them), by language. What a scan cannot see (a declaration spread over lines,
 * a macro) it misses; the map says the names came from a scan.
 */
const LINE_SCANS: LineScan[] = [
  { extensions: ['.py', '.pyi'], patterns: [/^(?:async\s+)?def\s+([A-Za-z_]\w*\s*\([^)]*\)?)/, /^(class\s+[A-Za-z_]\w*)/, /^([A-Z][A-Z0-9_]+)\s*=/] },
  { extensions: ['.go'], patterns: [/^func\s+(\([^)]*\)\s*[A-Za-z_]\w*|[A-Za-z_]\w*)\s*\(/, /^type\s+([A-Za-z_]\w*\s+(?:struct|interface)?)/, /^(?:var|const)\s+([A-Za-z_]\w*)/] },
  { extensions: ['.rs'], patterns: [/^(?:pub(?:\([^)]*\))?\s+)?(?:async\s+)?((?:fn|struct|enum|trait|mod|type|const|static)\s+[A-Za-z_]\w*)/, /^(impl(?:<[^>]*>)?\s+[^{]+?)\s*\{?$/] },
  { extensions: ['.java', '.kt', '.kts', '.scala', '.cs'], patterns: [/^(?:\s{0,4})(?:(?:public|private|protected|internal|abstract|final|sealed|static|data|open|partial)\s+)*((?:class|interface|enum|record|object|struct|fun)\s+[A-Za-z_]\w*)/] },
  { extensions: ['.rb'], patterns: [/^\s{0,2}((?:def|class|module)\s+[A-Za-z_][\w.:!?]*)/] },
  { extensions: ['.php'], patterns: [/^\s{0,4}(?:(?:public|private|protected|static|abstract|final)\s+)*((?:function|class|interface|trait|enum)\s+[A-Za-z_]\w*)/] },
  { extensions: ['.c', '.h', '.cc', '.cpp', '.hpp', '.cxx'], patterns: [/^(?:static\s+|inline\s+|extern\s+)*(?:[A-Za-z_][\w\s*&:<>,]*?[\s*&])([A-Za-z_][\w:]*)\s*\([^;]*$/, /^((?:struct|class|enum|union|namespace)\s+[A-Za-z_]\w*)\s*[{:]?\s*$/, /^#define\s+([A-Za-z_]\w*)/] },
  { extensions: ['.sh', '.bash', '.zsh'], patterns: [/^(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{?/, /^function\s+([A-Za-z_][\w-]*)/] },
  { extensions: ['.md', '.markdown'], patterns: [/^(#{1,2}\s+\S.*?)\s*#*\s*$/] },
];

function scanLines(content: string, patterns: RegExp[]): string[] {
  const names: string[] = [];
  for (const line of content.split('\n')) {
    if (line.length > 300) continue;
    for (const pattern of patterns) {
      const match = pattern.exec(line.replace(/\r$/, ''));
      if (match?.[1]) {
        names.push(match[1].replace(/\s+/g, ' ').trim());
        break;
      }
    }
  }
  return names;
}
