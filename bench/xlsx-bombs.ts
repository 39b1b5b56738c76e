/**
 * Decompression bombs: how long the xlsx reader takes to refuse a small upload whose sheet
 * inflates enormously, and how much memory it uses doing so.
 *
 *   npx tsx bench/xlsx-bombs.ts                  # all cases
 *   npx tsx bench/xlsx-bombs.ts cell:10 rows:11  # a 10 MB single cell; 11 million rows
 *
 * Cases: `cell:<MB>` is a workbook whose only data cell is an inline string of that many MB;
 * `rows:<millions>` is a sheet of that many identical one-cell rows without row numbers (they
 * compress about 1000:1); `rowsr:<millions>` the same rows numbered (`<row r="n">`, about 8:1).
 * Inputs are generated into bench/out/ (streamed through yazl, so generating them holds no
 * sheet in memory). Each case runs `openRecords` + `writeChunks` in its own process, as split
 * would, and prints wall and CPU seconds, peak RSS and the first line of the error it ended with.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { ZipFile } from 'yazl';
import { writeChunks } from '../batch-jobs/records/chunker';
import { openRecords } from '../batch-jobs/records/reader';

const OUT = join(fileURLToPath(new URL('.', import.meta.url)), 'out');
const NS = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
const REL = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';

function fileOf(name: string): string {
  return join(OUT, `bomb-${name.replace(':', '-')}.xlsx`);
}

/** The sheet XML of a case, as a stream of pieces. */
function* sheetXml(name: string): Generator<string> {
  const [kind, size] = name.split(':') as [string, string];
  yield `<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="${NS}"><sheetData>`;
  yield '<row r="1"><c r="A1" t="inlineStr"><is><t>Customer ID</t></is></c></row>';
  if (kind === 'cell') {
    yield '<row r="2"><c r="A2" t="inlineStr"><is><t>';
    const piece = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < Number(size); i++) yield piece;
    yield '</t></is></c></row>';
  } else {
    const rows = Number(size) * 1_000_000;
    let buf = '';
    for (let r = 2; r <= rows + 1; r++) {
      buf += kind === 'rowsr' ? `<row r="${r}"><c r="A${r}"><v>1</v></c></row>` : '<row><c><v>1</v></c></row>';
      if (buf.length > 1 << 20) {
        yield buf;
        buf = '';
      }
    }
    yield buf;
  }
  yield '</sheetData></worksheet>';
}

async function generate(name: string): Promise<void> {
  const path = fileOf(name);
  if (existsSync(path)) return;
  await mkdir(OUT, { recursive: true });
  const zip = new ZipFile();
  const small = (text: string, part: string) => zip.addBuffer(Buffer.from(text), part, { compressionLevel: 9 });
  small(`<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>`, '[Content_Types].xml');
  small(
    `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="${REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>`,
    '_rels/.rels',
  );
  small(
    `<?xml version="1.0"?><workbook xmlns="${NS}" xmlns:r="${REL}"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>`,
    'xl/workbook.xml',
  );
  small(
    `<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="${REL}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>`,
    'xl/_rels/workbook.xml.rels',
  );
  zip.addReadStream(Readable.from(sheetXml(name)), 'xl/worksheets/sheet1.xml', { compressionLevel: 9 });
  zip.end();
  const partial = `${path}.partial`;
  await new Promise<void>((resolve, reject) => {
    zip.outputStream.pipe(createWriteStream(partial)).on('close', resolve).on('error', reject);
  });
  await rename(partial, path);
}

interface CaseResult {
  case: string;
  uploadMB: number;
  seconds: number;
  cpuSeconds: number;
  peakRssMB: number;
  outcome: string;
}

async function vmHwm(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

async function runCase(name: string): Promise<CaseResult> {
  const path = fileOf(name);
  const started = performance.now();
  const cpuStart = process.cpuUsage();
  const tmp = await mkdtemp(join(tmpdir(), 'bench-bomb-'));
  let outcome: string;
  try {
    const source = await openRecords(createReadStream(path), {
      fileName: `${name}.xlsx`,
      columns: [{ name: 'Customer ID', type: 'text', required: true }],
    });
    const result = await writeChunks(source.rows, { chunkSize: 1000, maxChunks: 10_000, tmpDir: tmp, writeChunk: async () => {} });
    outcome = `read ${result.rows} rows`;
  } catch (err) {
    outcome = `refused: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const cpu = process.cpuUsage(cpuStart);
  return {
    case: name,
    uploadMB: Number(((await stat(path)).size / 1024 / 1024).toFixed(2)),
    seconds: Number(((performance.now() - started) / 1000).toFixed(2)),
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
    peakRssMB: Math.round((await vmHwm()) / 1024 / 1024),
    outcome,
  };
}

const CASES = ['cell:10', 'cell:20', 'cell:40', 'cell:1024', 'rows:11', 'rowsr:11'];

async function main(): Promise<void> {
  const child = process.env.BENCH_BOMB_CASE;
  if (child) {
    process.stdout.write(`${JSON.stringify(await runCase(child))}\n`);
    return;
  }
  const wanted = process.argv.slice(2).length > 0 ? process.argv.slice(2) : CASES;
  for (const name of wanted) {
    await generate(name);
    const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
    const run = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_BOMB_CASE: name },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: Number(process.env.BENCH_BOMB_TIMEOUT_S ?? 600) * 1000,
    });
    if (run.status !== 0) {
      console.log(`${name.padEnd(10)} did not finish (exit ${run.status ?? run.signal}; load ${load})`);
      continue;
    }
    const r = JSON.parse(run.stdout.trim().split('\n').pop()!) as CaseResult;
    console.log(
      `${r.case.padEnd(10)} upload ${r.uploadMB.toFixed(2).padStart(7)} MB  ${r.seconds.toFixed(2).padStart(7)} s (cpu ${r.cpuSeconds.toFixed(2).padStart(7)} s)  peak RSS ${r.peakRssMB} MB  load ${load}\n           ${r.outcome.slice(0, 220)}`,
    );
  }
}

await main();
