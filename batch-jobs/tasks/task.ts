/**
 * What a fan-out task is: a function called once per work item, per attempt. The fan-out stage
 * owns concurrency, retries with back-off, the rate limit and result parts; a task only makes
 * one attempt and says how it went by returning a result or throwing
 * TransientError (retry) / PermanentError (the item fails with that reason).
 */
import type { ColumnType } from '../../runtime/config/schema';
import type { Row, WorkItem } from '../../runtime/model';

export interface TaskContext {
  /** 1 for the first call of this item. */
  attempt: number;
  /** Aborted when the child is shutting down. */
  signal: AbortSignal;
}

export interface TaskResult {
  /** Item-level fields (one value per item, e.g. a trip's distance). */
  fields?: Row;
  /** Per-row fields, aligned with `item.d`. */
  perRow?: Row[];
}

export interface OutputColumn {
  name: string;
  type: ColumnType;
}

/** Columns a task adds to the workbook; known without running it (consolidate needs them). */
export interface TaskOutputShape {
  /** Columns added to every row of the Results sheet, in order. */
  rowColumns: OutputColumn[];
  /**
   * A per-item sheet (e.g. `Trips`) for item-level fields. When absent, item-level fields are
   * written on each of the item's rows under `rowColumns`.
   */
  itemSheet?: {
    name: string;
    columns: OutputColumn[];
    /** The column that holds the item's group key; filled by consolidate when the item failed. */
    keyColumn?: string;
  };
}

export interface Task {
  readonly output: TaskOutputShape;
  run(item: WorkItem, ctx: TaskContext): Promise<TaskResult>;
  /** Releases connections. */
  close?(): Promise<void>;
}
