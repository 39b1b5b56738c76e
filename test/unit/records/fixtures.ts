/**
 * Test fixtures for the records tests: inputs as streams, workbooks written with exceljs, and
 * hand-made zips for the xlsx shapes exceljs never writes (no r attributes, prefixed XML, ...).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32, deflateRawSync } from 'node:zlib';
import ExcelJS from 'exceljs';
import type { ColumnConfig } from '../../../runtime/config/schema';
import { openRecords, type OpenRecordsOptions, type RecordSource, type SourceRow } from '../../../batch-jobs/records/reader';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'records-test-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A stream of the bytes, cut into chunks of `chunkSize` (to test chunk boundaries). */
export function streamOf(data: string | Buffer, chunkSize = 64 * 1024): Readable {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunkSize) parts.push(buf.subarray(i, i + chunkSize));
  return Readable.from(parts);
}

export const col = (name: string, type: ColumnConfig['type'] = 'text', required = true): ColumnConfig => ({ name, type, required });

export async function collect(rows: AsyncIterable<SourceRow>): Promise<SourceRow[]> {
  const out: SourceRow[] = [];
  for await (const r of rows) out.push(r);
  return out;
}

/** Opens the data and reads every row. */
export async function readAll(
  data: string | Buffer,
  opts: Omit<OpenRecordsOptions, 'columns'> & { columns?: ColumnConfig[] },
  chunkSize?: number,
): Promise<{ source: RecordSource; rows: SourceRow[] }> {
  const source = await openRecords(streamOf(data, chunkSize), { columns: [], ...opts });
  return { source, rows: await collect(source.rows) };
}

/** Rejection of a promise, for assertions on errors. */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the promise to be rejected');
}

/** Builds a workbook with exceljs and returns its bytes. */
export async function workbookBytes(build: (wb: ExcelJS.Workbook) => void): Promise<Buffer> {
  const wb = new ExcelJS.Workbook();
  build(wb);
  return Buffer.from(await wb.xlsx.writeBuffer());
}

/** Writes rows with exceljs's streaming writer (inline strings when useSharedStrings is false). */
export async function streamedWorkbookBytes(rows: unknown[][], useSharedStrings: boolean): Promise<Buffer> {
  return withTempDir(async (dir) => {
    const filename = join(dir, 'book.xlsx');
    const wb = new ExcelJS.stream.xlsx.WorkbookWriter({ filename, useSharedStrings, useStyles: true });
    const ws = wb.addWorksheet('Data');
    for (const r of rows) ws.addRow(r).commit();
    ws.commit();
    await wb.commit();
    return readFile(filename);
  });
}

/** A minimal zip (stored or deflated entries), for hand-made workbooks. */
export function makeZip(files: Record<string, string | Buffer>, deflate = false): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    const stored = deflate ? deflateRawSync(data) : data;
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    // The local header and the central directory record share these fields, from "version
    // needed" to the name's length (the central record has "version made by" before them).
    const fields = (header: Buffer, at: number) => {
      header.writeUInt16LE(20, at); // version needed
      header.writeUInt16LE(0x0800, at + 2); // UTF-8 names
      header.writeUInt16LE(deflate ? 8 : 0, at + 4);
      header.writeUInt32LE(crc, at + 10);
      header.writeUInt32LE(stored.length, at + 14);
      header.writeUInt32LE(data.length, at + 18);
      header.writeUInt16LE(nameBytes.length, at + 22);
    };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    fields(local, 4);
    locals.push(local, nameBytes, stored);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4); // version made by
    fields(central, 6);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + stored.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  const count = Object.keys(files).length;
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

const NS = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
const REL_NS = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';

export interface HandSheet {
  name: string;
  /** The sheetData's inner XML. */
  xml: string;
  hidden?: boolean;
}

/** A workbook from raw sheet XML, with optional shared strings, styles and 1904 dates. */
export function handMadeXlsx(opts: {
  sheets: HandSheet[];
  sharedStrings?: string[] | string;
  /** The styles part's inner XML (numFmts, cellXfs). */
  styles?: string;
  date1904?: boolean;
  /** Element prefix (e.g. "x") as the Open XML SDK writes it. */
  prefix?: string;
  deflate?: boolean;
}): Buffer {
  const p = opts.prefix ? `${opts.prefix}:` : '';
  const xmlns = opts.prefix ? `xmlns:${opts.prefix}="${NS}"` : `xmlns="${NS}"`;
  const files: Record<string, string> = {
    '[Content_Types].xml':
      '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
    '_rels/.rels': `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="${REL_NS}/officeDocument" Target="xl/workbook.xml"/></Relationships>`,
    'xl/workbook.xml': `<?xml version="1.0" encoding="UTF-8"?><${p}workbook ${xmlns} xmlns:r="${REL_NS}">${
      opts.date1904 ? `<${p}workbookPr date1904="1"/>` : ''
    }<${p}sheets>${opts.sheets
      .map((s, i) => `<${p}sheet name="${s.name}" sheetId="${i + 1}" r:id="rId${i + 1}"${s.hidden ? ' state="hidden"' : ''}/>`)
      .join('')}</${p}sheets></${p}workbook>`,
  };
  const rels = opts.sheets.map(
    (_, i) => `<Relationship Id="rId${i + 1}" Type="${REL_NS}/worksheet" Target="worksheets/sheet${i + 1}.xml"/>`,
  );
  opts.sheets.forEach((s, i) => {
    files[`xl/worksheets/sheet${i + 1}.xml`] =
      `<?xml version="1.0" encoding="UTF-8"?><${p}worksheet ${xmlns}><${p}sheetData>${s.xml}</${p}sheetData></${p}worksheet>`;
  });
  if (opts.sharedStrings !== undefined) {
    rels.push(`<Relationship Id="rIdS" Type="${REL_NS}/sharedStrings" Target="sharedStrings.xml"/>`);
    const inner = Array.isArray(opts.sharedStrings)
      ? opts.sharedStrings.map((s) => `<${p}si><${p}t>${s}</${p}t></${p}si>`).join('')
      : opts.sharedStrings;
    files['xl/sharedStrings.xml'] = `<?xml version="1.0" encoding="UTF-8"?><${p}sst ${xmlns}>${inner}</${p}sst>`;
  }
  if (opts.styles !== undefined) {
    rels.push(`<Relationship Id="rIdT" Type="${REL_NS}/styles" Target="/xl/styles.xml"/>`);
    files['xl/styles.xml'] = `<?xml version="1.0" encoding="UTF-8"?><${p}styleSheet ${xmlns}>${opts.styles}</${p}styleSheet>`;
  }
  files['xl/_rels/workbook.xml.rels'] =
    `<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">${rels.join('')}</Relationships>`;
  return makeZip(files, opts.deflate);
}
