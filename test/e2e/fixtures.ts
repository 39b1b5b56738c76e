/**
 * Shared pieces of the end-to-end tests: a tax-due config pointed at a demo data source on
 * loopback, input files written in the test, and the result workbook read back with exceljs.
 */
import { writeFile } from 'node:fs/promises';
import ExcelJS from 'exceljs';
import { parseAppConfig, replaceOrigin, type AppConfig, type AppConfigInput } from '../../runtime/config/schema';
import { pipelinesConfig } from '../../config/pipelines';
import { isKnownCustomer, MAX_YEAR, MIN_YEAR, taxDueFor } from '../../local/sources/demo-data-source';
import type { JobRequest, JobSubmitter } from '../../runtime/ports';

export const TOKEN = 'e2e-token';

type PipelineInput = AppConfigInput['pipelines'][number];

/** The shipped tax-due pipeline, pointed at `url`, with overrides. */
export function taxConfig(url: string, overrides: Partial<PipelineInput> = {}, top: Partial<AppConfigInput> = {}): AppConfig {
  const base = pipelinesConfig.pipelines.find((p) => p.name === 'tax-due')!;
  if (base.task.type !== 'http-lookup') throw new Error('tax-due is an http-lookup pipeline');
  const task = { ...base.task, url: replaceOrigin(base.task.url, url) };
  return parseAppConfig({
    sender: 'fanout@example.com',
    operatorRecipients: ['ops@example.com'],
    ...top,
    pipelines: [{ ...base, task, retry: { maxAttempts: 6, baseDelayMs: 5, maxDelayMs: 50 }, ...overrides }],
  });
}

export interface Customer {
  id: string;
  name: string;
  year: string | number;
  postcode: string | null;
}

/** Deterministic customers: mostly known ids, some unknown (404), leading zeros, a formula-looking name. */
export function customers(n: number): Customer[] {
  const out: Customer[] = [];
  for (let i = 0; i < n; i++) {
    const unknown = i % 17 === 5;
    const id = unknown ? `9${String(10000 + i).padStart(5, '0')}` : String((i * 7919) % 900000).padStart(6, '0');
    out.push({
      id,
      name: i === 3 ? '=HYPERLINK("http://evil.example","click")' : `Customer ${i}`,
      year: 2015 + (i % 9),
      postcode: i % 5 === 0 ? null : `AB${i % 90} ${i % 9}CD`,
    });
  }
  return out;
}

export const HEADERS = [' customer  ID', 'NAME', 'Tax Year ', 'postcode'];

export async function writeCustomersXlsx(path: string, rows: Customer[], headers = HEADERS): Promise<void> {
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet('Customers');
  ws.addRow(headers);
  for (const r of rows) ws.addRow([r.id, r.name, r.year, r.postcode]);
  await wb.xlsx.writeFile(path);
}

export async function writeCustomersCsv(path: string, rows: Customer[], headers = HEADERS): Promise<void> {
  const q = (v: unknown) => (v === null ? '' : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const lines = [headers.map(q).join(','), ...rows.map((r) => [r.id, r.name, r.year, r.postcode].map(q).join(','))];
  await writeFile(path, `\uFEFF${lines.join('\r\n')}\r\n`);
}

/** What the Results sheet must say for a customer, computed from the data source's own rules. */
export function expectedOutcome(c: Customer): { status: 'done' | 'failed'; fields?: (string | number)[]; error?: RegExp } {
  const year = Number(c.year);
  if (!Number.isInteger(year)) return { status: 'failed', error: /invalid input/ };
  if (!isKnownCustomer(c.id) || year < MIN_YEAR || year > MAX_YEAR) return { status: 'failed', error: /404/ };
  const a = taxDueFor(c.id, year);
  return { status: 'done', fields: [a.taxDue, a.currency, a.assessedOn, a.status] };
}

export type SheetRows = unknown[][];

/** A sheet's rows as plain values (dates as ISO date strings, rich text as text). */
export async function readSheets(path: string): Promise<Map<string, SheetRows>> {
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.readFile(path);
  const sheets = new Map<string, SheetRows>();
  wb.eachSheet((ws) => {
    const rows: SheetRows = [];
    ws.eachRow({ includeEmpty: true }, (row, n) => {
      const values: unknown[] = [];
      for (let c = 1; c <= ws.columnCount; c++) {
        const v = row.getCell(c).value;
        values.push(
          v instanceof Date
            ? v.toISOString().slice(0, 10)
            : v && typeof v === 'object' && 'richText' in v
              ? (v as { richText: { text: string }[] }).richText.map((t) => t.text).join('')
              : v && typeof v === 'object' && 'formula' in v
                ? { formula: (v as { formula: string }).formula }
                : (v ?? null),
        );
      }
      rows[n - 1] = values;
    });
    sheets.set(ws.name, rows);
  });
  return sheets;
}

/** A job queue that records submissions (the port, not the SDK: the Batch adapter has its own tests). */
export class RecordingJobs implements JobSubmitter {
  readonly submitted: Array<JobRequest & { jobId: string }> = [];
  failNext = false;
  async submit(job: JobRequest): Promise<{ jobId: string }> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('Batch is unavailable');
    }
    const jobId = `job-${this.submitted.length + 1}`;
    this.submitted.push({ ...job, jobId });
    return { jobId };
  }
}
