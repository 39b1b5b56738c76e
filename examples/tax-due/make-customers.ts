/**
 * Writes the demo inputs of the `tax-due` pipeline: `customers.xlsx` (2,400 rows) and
 * `customers.csv` (200 rows), next to this file. The content is the same every time (seeded); the
 * files are committed, so run this only after changing it:
 *
 *   npx tsx examples/tax-due/make-customers.ts [--rows 2400] [--csv-rows 200] [--out DIR]
 *
 * Both files carry the messiness of real customer lists, each case on a known row (see
 * `specialRows`): header spacing and case (" customer  ID", "Name ", "TAX YEAR"), ids with leading
 * zeros stored as text, trailing spaces, a name that looks like a formula, a name with a comma
 * and quotes, tax years typed as text, three invalid tax years (item failures with a reason),
 * one year the data source refuses (400), and four customers it does not know (404).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ExcelJS from 'exceljs';
import Papa from 'papaparse';
import { flagValue, isMain } from '../cli';
import { mulberry32 } from '../seeded-random';

export const XLSX_HEADER = [' customer  ID', 'Name ', 'TAX YEAR', 'Postcode'];
export const CSV_HEADER = ['Customer ID ', 'NAME', 'Tax  Year', ' postcode'];

export type CustomerRow = [id: string, name: string, taxYear: number | string, postcode: string | null];

const FIRST = [
  'Olivia',
  'Noah',
  'Amelia',
  'Oliver',
  'Isla',
  'George',
  'Ava',
  'Arthur',
  'Mia',
  'Leo',
  'Ivy',
  'Harry',
  'Freya',
  'Oscar',
  'Lily',
  'Muhammad',
  'Grace',
  'Jack',
  'Sophia',
  'Theo',
  'Aisha',
  'Chen',
  'Priya',
  'Tomasz',
  'Zoë',
];
const LAST = [
  'Smith',
  'Jones',
  'Taylor',
  'Brown',
  'Williams',
  'Wilson',
  'Johnson',
  'Davies',
  'Patel',
  'Wright',
  'Robinson',
  'Thompson',
  'Evans',
  'Walker',
  'Khan',
  'Hughes',
  "O'Neill",
  'Nowak',
  'Singh',
  'García',
  'Müller',
  'Okafor',
  'Lee',
];
const BUSINESS = ['Ltd', 'Trading', '& Sons', 'Bakery', 'Consulting', 'Garage', 'Holdings', 'Plumbing'];
const AREAS = ['SW1A', 'EC2V', 'M1', 'B33', 'LS1', 'G2', 'CF10', 'BS1', 'NE1', 'EH1', 'L1', 'OX1', 'CB2', 'BT1'];

/** Where each special case sits, as a share of the row count (so the small CSV has them all too). */
export function specialRows(count: number) {
  const at = (share: number) => Math.min(count - 1, Math.floor(count * share));
  return {
    unknownIds: [at(0.07), at(0.33), at(0.66), at(0.95)],
    invalidYears: [at(0.13), at(0.51), at(0.87)],
    refusedYear: at(0.42),
    formulaName: at(0.21),
    commaName: at(0.29),
    trailingSpaceId: at(0.18),
  };
}

export function customerRows(count: number, seed = 20240401): CustomerRow[] {
  const random = mulberry32(seed);
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)];
  const special = specialRows(count);
  const unknownIds = ['912345', '987654', '900001', '999999'];
  const invalidYears = ['20x3', 'last year', '2O22'];
  const used = new Set<string>();
  const rows: CustomerRow[] = [];
  for (let i = 0; i < count; i++) {
    // Six-digit ids below 900000; about a third start with zeros ("004215").
    let id: string;
    do {
      const n = random() < 0.35 ? 1 + Math.floor(random() * 99_999) : 100_000 + Math.floor(random() * 799_999);
      id = String(n).padStart(6, '0');
    } while (used.has(id));
    used.add(id);

    let name = random() < 0.15 ? `${pick(LAST)} ${pick(BUSINESS)}` : `${pick(FIRST)} ${pick(LAST)}`;
    if (random() < 0.05) name += '  '; // trailing spaces
    let year: number | string = 2019 + Math.floor(random() * 6);
    if (random() < 0.03) year = `${year} `; // typed as text, with a trailing space
    const postcode =
      random() < 0.1
        ? null
        : `${pick(AREAS)} ${1 + Math.floor(random() * 9)}${String.fromCharCode(65 + Math.floor(random() * 26))}${String.fromCharCode(65 + Math.floor(random() * 26))}`;
    rows.push([id, name, year, postcode]);
  }
  special.unknownIds.forEach((row, k) => (rows[row][0] = unknownIds[k]));
  special.invalidYears.forEach((row, k) => (rows[row][2] = invalidYears[k]));
  rows[special.refusedYear][2] = 1999;
  rows[special.formulaName][1] = '=HYPERLINK("http://example.com/pay","Pay now")';
  rows[special.commaName][1] = 'Smith, "Smudge" & Co';
  rows[special.trailingSpaceId][0] = `${rows[special.trailingSpaceId][0]}  `;
  return rows;
}

export async function writeCustomersXlsx(path: string, rows: CustomerRow[]): Promise<void> {
  const workbook = new ExcelJS.Workbook();
  const fixed = new Date(Date.UTC(2024, 3, 1));
  workbook.creator = 'batch-fanout demo';
  workbook.created = fixed;
  workbook.modified = fixed;
  const sheet = workbook.addWorksheet('Customers');
  sheet.addRow(XLSX_HEADER);
  for (const row of rows) sheet.addRow(row);
  sheet.getColumn(1).width = 14;
  sheet.getColumn(2).width = 34;
  sheet.getColumn(3).width = 10;
  sheet.getColumn(4).width = 12;
  sheet.getRow(1).font = { bold: true };
  await workbook.xlsx.writeFile(path);
}

export function customersCsv(rows: CustomerRow[]): string {
  return Papa.unparse([CSV_HEADER, ...rows.map((r) => r.map((c) => (c === null ? '' : String(c))))], {
    newline: '\r\n',
    quotes: false,
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (flag: string, fallback: string) => flagValue(args, flag, fallback);
  const here = dirname(fileURLToPath(import.meta.url));
  const out = arg('--out', here);
  const xlsxRows = Number(arg('--rows', '2400'));
  const csvRows = Number(arg('--csv-rows', '200'));
  mkdirSync(out, { recursive: true });
  await writeCustomersXlsx(join(out, 'customers.xlsx'), customerRows(xlsxRows));
  writeFileSync(join(out, 'customers.csv'), `${customersCsv(customerRows(csvRows, 7))}\r\n`);
  console.log(`wrote ${join(out, 'customers.xlsx')} (${xlsxRows} rows) and ${join(out, 'customers.csv')} (${csvRows} rows)`);
}

if (isMain(import.meta.url)) void main();
