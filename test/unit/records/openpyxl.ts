/**
 * openpyxl (Debian's python3-openpyxl, run with /usr/bin/python3; CI installs it) as an
 * independent program in the tests: it writes input workbooks the way a person's scripts do, and
 * reads result workbooks back.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { withTempDir } from './fixtures';

const run = promisify(execFile);
export const PYTHON = '/usr/bin/python3';

/**
 * Runs a Python script that builds an openpyxl Workbook `wb` (already imported as `openpyxl`, with
 * `wb = openpyxl.Workbook()` and `ws = wb.active` set up) and returns the saved file's bytes.
 */
export async function openpyxlWorkbook(body: string): Promise<Buffer> {
  return withTempDir(async (dir) => {
    const path = join(dir, 'book.xlsx');
    const script = `import sys, openpyxl\nwb = openpyxl.Workbook()\nws = wb.active\n${body}\nwb.save(sys.argv[1])\n`;
    await run(PYTHON, ['-c', script, path]);
    return readFile(path);
  });
}

export type SheetValues = (string | number | boolean | null)[][];

/** Every sheet of a workbook as openpyxl reads it: cell values (datetimes as ISO text), by sheet name. */
export async function readWithOpenpyxl(path: string): Promise<Record<string, SheetValues>> {
  const script = `
import sys, json, datetime, openpyxl
wb = openpyxl.load_workbook(sys.argv[1])
out = {}
for ws in wb.worksheets:
    rows = []
    for row in ws.iter_rows(values_only=True):
        rows.append([v.isoformat() if isinstance(v, (datetime.datetime, datetime.date)) else v for v in row])
    out[ws.title] = rows
json.dump(out, sys.stdout)
`;
  const { stdout } = await run(PYTHON, ['-c', script, path], { maxBuffer: 256 * 1024 * 1024 });
  return JSON.parse(stdout) as Record<string, SheetValues>;
}
