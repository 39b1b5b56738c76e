/** The pure parts of the handlers: event parsing, failure descriptions, email subjects. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExitCode } from '../../../runtime/errors';
import { decodeS3Key } from '../../../lambda/handlers/on-intake';
import { describeJobFailure } from '../../../lambda/handlers/on-job-failed';
import { parseSplitDone } from '../../../lambda/handlers/on-split-done';
import { failureMail, failureSubject, printable, resultSubject } from '../../../runtime/mail/messages';
import type { RunRecord } from '../../../runtime/model';

describe('handler helpers', () => {
  it('decodes S3 event keys: "+" is a space, %XX an escaped byte', () => {
    assert.equal(decodeS3Key('intake/tax-due/My+File%2B2024%C3%A9.xlsx'), 'intake/tax-due/My File+2024é.xlsx');
  });

  it('reads a split-done message and refuses anything else, quoting it', () => {
    assert.deepEqual(parseSplitDone('{"runId":"r","pipeline":"p","chunks":3,"items":30}'), {
      runId: 'r',
      pipeline: 'p',
      chunks: 3,
      items: 30,
    });
    assert.throws(() => parseSplitDone('{"runId":"r"}'), /needs runId, pipeline, chunks.*"runId":"r"/);
    assert.throws(() => parseSplitDone('hello'), /not JSON.*hello/);
  });

  it('describes a storage failure of a fan-out child with its chunk, attempts and cause', () => {
    const text = describeJobFailure(
      {
        jobName: 'j',
        jobId: 'a:4',
        status: 'FAILED',
        container: { exitCode: ExitCode.STORAGE },
        attempts: [{}, {}, {}],
        arrayProperties: { index: 4 },
      },
      'fanout',
    );
    assert.match(
      text,
      /processing the work items.*\(chunk 4\) failed after 3 attempt\(s\): the storage bucket could not be read or written/,
    );
    assert.match(text, /Upload the file again/);
  });

  it('describes a timeout without an exit code by its status reason', () => {
    const text = describeJobFailure(
      { jobName: 'j', jobId: 'c', status: 'FAILED', statusReason: 'Job attempt duration exceeded timeout' },
      'consolidate',
    );
    assert.match(text, /writing the result workbook.*Job attempt duration exceeded timeout/);
  });

  it('puts pipeline, input and counts in the result subject', () => {
    const run = { pipeline: 'tax-due', inputName: 'customers.xlsx', counts: { succeeded: 2392, failed: 8 } } as RunRecord;
    assert.equal(resultSubject(run), '[batch-fanout] tax-due: customers.xlsx - 2,392 done, 8 failed');
    assert.equal(resultSubject({ ...run, counts: { succeeded: 5, failed: 0 } }), '[batch-fanout] tax-due: customers.xlsx - all 5 done');
  });

  it('writes a failure email that says what went wrong and what to do', () => {
    const mail = failureMail({
      from: 'f@example.com',
      to: ['t@example.com'],
      pipeline: 'p',
      inputName: 'x.csv',
      runId: 'r1',
      reason: 'x.csv has no column "Tax Year".',
    });
    assert.match(mail.subject, /FAILED p: x\.csv/);
    assert.match(mail.text, /no column "Tax Year"/);
    assert.match(mail.text, /upload the file again/);
    assert.match(mail.text, /Run id: r1/);
  });

  it('shows every control character of a file name escaped, so a subject stays one header line', () => {
    assert.equal(printable('a\r\nb\tc\u0000d\u001be\u007ff\u0085g\u2028h.csv'), 'a\\r\\nb\\tc\\u0000d\\u001Be\\u007Ff\\u0085g\\u2028h.csv');
    assert.equal(printable('Zoë 李雷.xlsx'), 'Zoë 李雷.xlsx');
    assert.equal(failureSubject('tax-due', 'x\r\nBcc: y.csv'), '[batch-fanout] FAILED tax-due: x\\r\\nBcc: y.csv');
  });
});
