/**
 * Files benchmark: 10,000 XML files of 2-20 KB in one zip, converted by the `xml-to-json`
 * pipeline through the whole local pipeline (emulated S3/DynamoDB/SES, on-intake, list, the
 * fan-out children, summary, cleanup), against a bare loop that parses the same files with
 * fast-xml-parser and serialises the JSON in one process.
 *
 *   npx tsx bench/files.ts [files]          # default 10000
 *
 * Prints files/s, MB/s (XML in), CPU seconds (this process and its children) and peak RSS (this
 * process; the children's largest, from getrusage, when /usr/bin/time is used to start it), the
 * ratio of the two, and the load average (the machine is shared).
 */
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { XMLParser } from 'fast-xml-parser';
import yazl from 'yazl';
import { runLocal } from '../local/local-run';
import { parseAppConfig } from '../runtime/config/schema';
import { mulberry32 } from '../examples/seeded-random';

const OUT = join(fileURLToPath(new URL('.', import.meta.url)), 'out');
const COUNT = Number(process.argv[2] ?? 10_000);

function orderXml(i: number, rnd: () => number): string {
  const target = 2048 + Math.floor(rnd() * 18 * 1024);
  const parts = [
    `<?xml version="1.0" encoding="UTF-8"?>\n<order id="${String(i).padStart(8, '0')}" currency="EUR">\n  <customer ref="C-${String(Math.floor(rnd() * 1e6)).padStart(6, '0')}">Customer ${i}</customer>\n`,
  ];
  let size = parts[0]!.length;
  for (let n = 1; size < target - 20; n++) {
    const line = `  <line no="${n}" sku="SKU-${Math.floor(rnd() * 99999)}"><description>Part ${n} of order ${i} &amp; co</description><quantity>${1 + Math.floor(rnd() * 50)}</quantity><unitPrice>${(rnd() * 500).toFixed(2)}</unitPrice></line>\n`;
    parts.push(line);
    size += line.length;
  }
  parts.push('</order>\n');
  return parts.join('');
}

async function makeZip(file: string): Promise<{ files: Buffer[]; bytes: number }> {
  const rnd = mulberry32(11);
  const zip = new yazl.ZipFile();
  const files: Buffer[] = [];
  let bytes = 0;
  for (let i = 0; i < COUNT; i++) {
    const body = Buffer.from(orderXml(i, rnd));
    files.push(body);
    bytes += body.length;
    zip.addBuffer(body, `orders/${String(Math.floor(i / 1000))}/order-${i}.xml`, { compress: true });
  }
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(file));
  return { files, bytes };
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const cpuSeconds = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;

async function main(): Promise<void> {
  await mkdir(OUT, { recursive: true });
  const zipFile = join(OUT, `xml-${COUNT}.zip`);
  const { files, bytes } = await makeZip(zipFile);
  const mb = bytes / 1024 / 1024;
  console.log(`input: ${COUNT} files, ${mb.toFixed(1)} MB of XML, zip ${existsSync(zipFile) ? 'written' : 'missing'}; load ${load()}`);

  // Bare loop: the same parser options as the task, one process, no storage.
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@',
    parseTagValue: false,
    parseAttributeValue: false,
    ignoreDeclaration: true,
  });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let out = 0;
  for (const f of files) out += JSON.stringify(parser.parse(f.toString('utf8'))).length;
  const bareS = (performance.now() - t0) / 1000;
  const bareCpu = cpuSeconds(process.cpuUsage(c0));
  console.log(
    `bare fast-xml-parser loop: ${(COUNT / bareS).toFixed(0)} files/s, ${(mb / bareS).toFixed(1)} MB/s, ${bareS.toFixed(2)} s, CPU ${bareCpu.toFixed(2)} s, JSON ${(out / 1024 / 1024).toFixed(1)} MB; load ${load()}`,
  );

  const config = parseAppConfig({
    pipelines: [
      {
        shape: 'files',
        name: 'xml-json',
        task: { type: 'xml-to-json' },
        chunkSize: 2500,
        concurrency: 32,
        recipients: ['bench@example.com'],
      },
    ],
  });
  const dir = await mkdtemp(join(tmpdir(), 'fanout-bench-files-'));
  try {
    const r0 = process.resourceUsage();
    const t1 = performance.now();
    const r = await runLocal({ file: zipFile, pipeline: 'xml-json', config, outDir: dir, maxParallel: 4 });
    const s = (performance.now() - t1) / 1000;
    const r1 = process.resourceUsage();
    const parentCpu = (r1.userCPUTime - r0.userCPUTime + r1.systemCPUTime - r0.systemCPUTime) / 1e6;
    const stages = r.jobs.map((j) => {
      const a = j.attempts;
      const span = a.length ? (Math.max(...a.map((x) => x.stoppedAt)) - Math.min(...a.map((x) => x.startedAt))) / 1000 : 0;
      return `${j.request.stage}${j.request.arraySize ? `[${j.request.arraySize}]` : ''} ${span.toFixed(1)} s`;
    });
    console.log(
      `local pipeline: ${r.status}, ${r.succeeded}/${r.items} converted, ${(COUNT / s).toFixed(0)} files/s, ${(mb / s).toFixed(1)} MB/s, ${s.toFixed(1)} s; ` +
        `parent CPU ${parentCpu.toFixed(1)} s (emulators, handlers), parent peak RSS ${(r1.maxRSS / 1024).toFixed(0)} MB; load ${load()}`,
    );
    console.log(`  stages (wall): ${stages.join(', ')}`);
    console.log(`ratio: the pipeline takes ${(s / bareS).toFixed(1)}x the bare loop's time`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
