/**
 * Builds examples/xml/batch.zip from the files under examples/xml/files/ (orders and customers;
 * order-10044.xml is malformed on purpose, to show a per-file failure with its line and column).
 *
 *   npx tsx examples/xml/make-zip.ts
 */
import { createWriteStream, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';

const here = dirname(fileURLToPath(import.meta.url));

function walk(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => (statSync(join(dir, name)).isDirectory() ? walk(join(dir, name)) : [join(dir, name)]));
}

export async function makeXmlZip(out = join(here, 'batch.zip')): Promise<string> {
  const zip = new yazl.ZipFile();
  const root = join(here, 'files');
  // A fixed time keeps the zip's bytes the same from run to run.
  for (const file of walk(root)) zip.addFile(file, relative(root, file), { mtime: new Date('2026-11-30T12:00:00Z') });
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(out));
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  makeXmlZip().then((p) => console.log(`wrote ${p}`));
}
