/**
 * The `xml-to-json` file task on fast-xml-parser: attributes kept under a prefix, element text,
 * CDATA merged into the text, repeated elements as arrays (and `alwaysArray` paths always), namespace
 * prefixes kept or removed, values kept as text unless their path is declared numeric.
 *
 * Safe on hostile files: external entities and parameter entities are refused, an entity whose
 * value refers to other entities (the "billion laughs" construction) is refused before any
 * expansion, and fast-xml-parser's own expansion limits bound the rest. A file over the size
 * limit fails without being read further. Every such problem fails the one file, with its reason
 * and, for malformed XML, the line and column.
 */
import { XMLParser, XMLValidator, type X2jOptions } from 'fast-xml-parser';
import type { XmlToJsonTaskConfig } from '../../runtime/config/files-schema';
import { FileFailure, outputPathFor, type FileRef, type FileTask, type FileTaskContext, type FileTaskResult } from './file-task';

/** Entity expansion limits handed to fast-xml-parser (expansions per file, characters they add). */
export const ENTITY_LIMITS = { maxTotalExpansions: 10_000, maxExpandedLength: 1_000_000, maxEntityCount: 100 } as const;

type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

/** Text of a file: UTF-8 (BOM dropped) or UTF-16 with a BOM; anything else that is not UTF-8 fails. */
export function decodeXml(bytes: Buffer): string {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder('utf-16le').decode(bytes.subarray(2));
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder('utf-16be').decode(bytes.subarray(2));
  const head = bytes.subarray(0, 200).toString('latin1');
  const declared = /^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']/.exec(head)?.[1]?.toLowerCase();
  if (declared && !['utf-8', 'utf8', 'us-ascii', 'ascii'].includes(declared)) {
    try {
      return new TextDecoder(declared).decode(bytes);
    } catch {
      throw new FileFailure(`the file declares encoding "${declared}", which cannot be decoded; save it as UTF-8`);
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new FileFailure(
      'not an XML file: its bytes are not UTF-8 text (a binary file, or text in another encoding without an XML declaration)',
    );
  }
}

/** Line and column (1-based) of a character offset. */
function positionAt(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

/**
 * Refuses the entity declarations of a DOCTYPE that could reach outside the file or grow without
 * bound: external (SYSTEM/PUBLIC) and parameter entities, and entities whose value refers to
 * another entity. Plain text entities (`<!ENTITY company "Acme Ltd">`) are allowed.
 */
export function checkDoctype(text: string): void {
  const start = text.search(/<!DOCTYPE/i);
  if (start === -1) return;
  const decl = /<!ENTITY\s+(%\s+)?([^\s"'>]+)\s+(SYSTEM|PUBLIC|"[^"]*"|'[^']*')/gi;
  decl.lastIndex = start;
  for (let m = decl.exec(text); m; m = decl.exec(text)) {
    const [, percent, name, value] = m as unknown as [string, string | undefined, string, string];
    const at = positionAt(text, m.index);
    if (percent) throw new FileFailure(`parameter entity "${name}" is refused: DTD parameter entities are not processed`, at);
    if (/^(SYSTEM|PUBLIC)$/i.test(value)) {
      throw new FileFailure(`external entity "${name}" is refused: entities that point at files or URLs are never fetched`, at);
    }
    if (/[&%]/.test(value)) {
      throw new FileFailure(
        `entity "${name}" refers to other entities: nested entity expansion is refused (it is how "billion laughs" files exhaust memory)`,
        at,
      );
    }
  }
}

/** One converter per pipeline config (the parser and the path sets are built once). */
export class XmlToJson {
  private readonly parser: XMLParser;
  private readonly arrays: ReadonlySet<string>;
  private readonly numbers: ReadonlySet<string>;

  constructor(private readonly config: XmlToJsonTaskConfig) {
    const options: X2jOptions = {
      ignoreAttributes: false,
      attributeNamePrefix: config.attributePrefix,
      textNodeName: config.textKey,
      removeNSPrefix: config.removeNamespacePrefixes,
      // Values stay text: ids keep leading zeros, "1e5" stays "1e5". Numeric paths are converted below.
      parseTagValue: false,
      parseAttributeValue: false,
      trimValues: true,
      cdataPropName: false,
      commentPropName: false,
      ignoreDeclaration: true,
      ignorePiTags: true,
      // Numeric character references (&#65;) are decoded; no HTML named entities (&nbsp; stays as it is).
      htmlEntities: {} as unknown as boolean,
      processEntities: { enabled: true, ...ENTITY_LIMITS },
    };
    this.parser = new XMLParser(options);
    this.arrays = new Set(config.alwaysArray);
    this.numbers = new Set(config.numeric);
  }

  /** XML text -> JSON text; throws FileFailure naming what is wrong and where. */
  convert(text: string): string {
    const first = text.search(/\S/);
    if (first === -1) throw new FileFailure('the file is empty (no XML in it)');
    if (text[first] !== '<') {
      const pos = positionAt(text, first);
      throw new FileFailure(`not an XML file: it starts with "${text.slice(first, first + 20).replace(/\s+/g, ' ')}" instead of "<"`, pos);
    }
    checkDoctype(text);
    const valid = XMLValidator.validate(text, { allowBooleanAttributes: false });
    if (valid !== true) {
      throw new FileFailure(`malformed XML: ${valid.err.msg}`, { line: valid.err.line, column: valid.err.col });
    }
    let tree: Record<string, Json>;
    try {
      tree = this.parser.parse(text) as Record<string, Json>;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (/expan|entit/i.test(msg)) throw new FileFailure(`entity expansion passes the limit: ${msg.replace(/^\[\w+\]\s*/, '')}`);
      throw new FileFailure(`malformed XML: ${msg}`);
    }
    if (this.arrays.size > 0 || this.numbers.size > 0) this.reshape(tree, '');
    return this.config.pretty ? JSON.stringify(tree, null, 2) : JSON.stringify(tree);
  }

  /** Applies `alwaysArray` and `numeric` along the JSON's own keys (attributes as `@name`). */
  private reshape(node: { [k: string]: Json }, path: string): void {
    // (arrays of arrays do not occur in parsed XML)
    const prefix = this.config.attributePrefix;
    for (const key of Object.keys(node)) {
      if (key === this.config.textKey) continue;
      const isAttr = prefix !== '' && key.startsWith(prefix);
      const segment = isAttr ? `@${key.slice(prefix.length)}` : key;
      const childPath = path === '' ? segment : `${path}.${segment}`;
      let value: Json = node[key] ?? null;
      if (!isAttr && this.arrays.has(childPath) && !Array.isArray(value)) value = node[key] = [value];
      if (this.numbers.has(childPath)) node[key] = value = this.toNumbers(value, childPath);
      if (Array.isArray(value)) {
        for (const v of value) if (v !== null && typeof v === 'object' && !Array.isArray(v)) this.reshape(v, childPath);
      } else if (value !== null && typeof value === 'object') this.reshape(value, childPath);
    }
  }

  private toNumbers(value: Json, path: string): Json {
    if (Array.isArray(value)) return value.map((v) => this.toNumbers(v, path));
    if (typeof value === 'string') {
      if (value.trim() === '') return null;
      const n = Number(value.trim());
      if (!Number.isFinite(n) || /^0[xob]/i.test(value.trim())) {
        throw new FileFailure(`${path} is declared numeric but holds "${value.slice(0, 40)}", which is not a decimal number`);
      }
      return n;
    }
    if (value !== null && typeof value === 'object') {
      const text = (value as { [k: string]: Json })[this.config.textKey];
      if (text !== undefined) (value as { [k: string]: Json })[this.config.textKey] = this.toNumbers(text, path);
    }
    return value;
  }
}

export function createXmlToJsonTask(config: XmlToJsonTaskConfig): FileTask {
  const converter = new XmlToJson(config);
  return {
    async run(file: FileRef, ctx: FileTaskContext): Promise<FileTaskResult> {
      const bytes = await ctx.io.read(config.maxFileBytes);
      const json = converter.convert(decodeXml(bytes));
      const body = Buffer.from(json, 'utf8');
      const outputKey = await ctx.io.write(outputPathFor(file.path, '.json'), body, 'application/json');
      return { outputKey, bytesIn: bytes.length, bytesOut: body.length };
    },
  };
}
