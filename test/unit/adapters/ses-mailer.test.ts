import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SESv2Client } from '@aws-sdk/client-sesv2';
import ExcelJS from 'exceljs';
import { MessageTooLargeError, SesMailer, buildRawMessage } from '../../../runtime/adapters/ses-mailer';
import { ExitCode, StorageError } from '../../../runtime/errors';
import type { MailMessage } from '../../../runtime/ports';
import { startEmulatorFixture, type EmulatorFixture } from './fixtures';

const XLSX = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

async function smallWorkbook(): Promise<Buffer> {
  const wb = new ExcelJS.Workbook();
  const ws = wb.addWorksheet('Results');
  ws.addRow(['Customer ID', 'Tax Due']);
  for (let i = 0; i < 200; i++) ws.addRow([`C${String(i).padStart(5, '0')}`, i * 1.25]);
  return Buffer.from(await wb.xlsx.writeBuffer());
}

describe('SesMailer against aws-ses-v2-local', () => {
  let fx: EmulatorFixture;
  let mailer: SesMailer;

  before(async () => {
    fx = await startEmulatorFixture();
    mailer = new SesMailer(fx.clients.ses, { maxMessageBytes: fx.emu.sesMaxMessageBytes });
  });
  after(async () => fx.close());

  it('delivers a message with an xlsx attachment that arrives byte for byte', async () => {
    // given a message with a workbook attached
    const workbook = await smallWorkbook();
    const message: MailMessage = {
      from: 'batch-fanout@example.com',
      to: ['tax-team@example.com', 'audit@example.com'],
      subject: 'tax-due: customers.xlsx — 200 done, 0 failed',
      text: 'The result is attached.',
      html: '<p>The result is attached.</p>',
      attachments: [{ filename: 'customers.run1.xlsx', content: workbook, contentType: XLSX }],
    };

    // when it is sent
    const { messageId } = await mailer.send(message);

    // then the emulator has it, with its addresses, subject, body and the attachment intact
    const received = (await fx.emu.listMail()).find((m) => m.messageId === messageId);
    assert.ok(received, `message ${messageId} not in the emulator's store`);
    assert.match(received.from, /batch-fanout@example\.com/);
    assert.deepEqual(received.to, ['tax-team@example.com', 'audit@example.com']);
    assert.equal(received.subject, message.subject);
    assert.equal(received.text?.trim(), 'The result is attached.');
    assert.equal(received.attachments.length, 1);
    const [attachment] = received.attachments;
    assert.equal(attachment!.filename, 'customers.run1.xlsx');
    assert.equal(attachment!.contentType, XLSX);
    assert.ok(attachment!.content.equals(workbook), 'attachment bytes differ');
    // and the workbook still opens
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(attachment!.content as unknown as ArrayBuffer);
    assert.equal(wb.getWorksheet('Results')?.getCell('A2').value, 'C00000');
  });

  it('keeps the raw message as sent, readable as .eml', async () => {
    // given
    const workbook = await smallWorkbook();
    const message: MailMessage = {
      from: 'batch-fanout@example.com',
      to: ['tax-team@example.com'],
      subject: 'eml check',
      text: 'see attachment',
      attachments: [{ filename: 'r.xlsx', content: workbook, contentType: XLSX }],
    };

    // when
    const { messageId } = await mailer.send(message);
    const eml = await fx.emu.getEml(messageId);

    // then it is the MIME message the mailer built (attachment base64, once)
    assert.match(eml, /^Subject: eml check\r?$/m);
    assert.match(eml, /Content-Disposition: attachment; filename=r\.xlsx/);
    const base64Lines = workbook.toString('base64').slice(0, 60);
    assert.ok(eml.includes(base64Lines), 'the attachment is not base64 of the workbook');
  });

  it('refuses a message over maxMessageBytes with MessageTooLargeError, sending nothing', async () => {
    // given a mailer that accepts 64 KiB and a 100 KiB attachment
    const small = new SesMailer(fx.clients.ses, { maxMessageBytes: 64 * 1024 });
    const before = (await fx.emu.listMail()).length;
    const message: MailMessage = {
      from: 'batch-fanout@example.com',
      to: ['tax-team@example.com'],
      subject: 'too large',
      text: 'x',
      attachments: [{ filename: 'big.bin', content: randomBytes(100 * 1024), contentType: 'application/octet-stream' }],
    };

    // when / then
    await assert.rejects(small.send(message), (err: unknown) => {
      assert.ok(err instanceof MessageTooLargeError);
      assert.equal(err.maxBytes, 64 * 1024);
      assert.ok(err.sizeBytes > 100 * 1024);
      return true;
    });
    assert.equal((await fx.emu.listMail()).length, before);
  });

  it('measures the raw size as sent: base64 makes an attachment about 4/3 larger', async () => {
    // given a 30 KiB attachment
    const message: MailMessage = {
      from: 'a@example.com',
      to: ['b@example.com'],
      subject: 's',
      text: 't',
      attachments: [{ filename: 'x.bin', content: randomBytes(30 * 1024), contentType: 'application/octet-stream' }],
    };
    const raw = await buildRawMessage(message);

    // then a 40 KiB limit (more than the attachment) is exceeded
    assert.ok(raw.length > 40 * 1024, `raw message is only ${raw.length} bytes`);
    const mailer40k = new SesMailer(fx.clients.ses, { maxMessageBytes: 40 * 1024 });
    await assert.rejects(mailer40k.send(message), MessageTooLargeError);
  });

  it('defaults to the SES v2 limit of 40 MB', () => {
    assert.equal(new SesMailer(fx.clients.ses).maxMessageBytes, 40 * 1024 * 1024);
  });

  it('turns a send failure into a StorageError with exit code MAIL', async () => {
    // given a client pointed at a loopback port where nothing listens
    const closed = new SESv2Client({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
      maxAttempts: 1,
    });
    const failing = new SesMailer(closed);

    // when / then
    await assert.rejects(
      failing.send({ from: 'a@example.com', to: ['b@example.com'], subject: 'unreachable', text: 't' }),
      (err: unknown) => {
        assert.ok(err instanceof StorageError);
        assert.equal(err.exitCode, ExitCode.MAIL);
        assert.match(err.message, /SES SendEmail/);
        assert.match(err.message, /"unreachable"/);
        return true;
      },
    );
    closed.destroy();
  });
});
