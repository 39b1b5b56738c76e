/**
 * What the format readers (CSV/TSV, xlsx) hand to `openRecords`: rows of raw cells in batches,
 * before header matching and normalisation.
 */
import type { RawCell } from './normalise';

export interface RawRow {
  /** Row number as a spreadsheet shows it (the first record or sheet row 1 is row 1). */
  rowNumber: number;
  /** Cells by column position (0 = column A); holes and missing tail cells are empty. */
  cells: RawCell[];
  /** Problems of the row's shape, already worded (e.g. malformed quotes). */
  problems?: string[];
}

export interface RawSource {
  /** Batches of rows in file order; single pass. */
  batches: AsyncGenerator<RawRow[]>;
  /** Sheet read (xlsx). */
  sheet?: string;
  /** Whether the workbook uses the 1904 date system (xlsx). */
  date1904?: boolean;
  /** True when cells past the header's last column are an error (CSV), not notes beside the table (xlsx). */
  strictWidth: boolean;
  /** Releases temp files and handles; safe to call twice. */
  close(): Promise<void>;
}

/** Column letters of a 0-based index: 0 -> A, 26 -> AA. */
export function columnLetter(index: number): string {
  let s = '';
  let n = index + 1;
  while (n > 0) {
    const r = (n - 1) % 26;
    s = String.fromCharCode(65 + r) + s;
    n = Math.floor((n - 1) / 26);
  }
  return s;
}
