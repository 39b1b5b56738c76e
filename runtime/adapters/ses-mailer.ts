/**
 * Mailer on Amazon SES v2 (SDK v3). The same code talks to aws-ses-v2-local in a local run.
 *
 * The raw MIME message is built with nodemailer's MailComposer (attachments base64) and sent as
 * `SendEmail` with `Content.Raw`. A message larger than the service accepts is refused before
 * sending with a MessageTooLargeError, so the caller can send a link instead.
 */
import { SendEmailCommand, type SESv2Client } from '@aws-sdk/client-sesv2';
import MailComposer from 'nodemailer/lib/mail-composer';
import { ExitCode, StorageError } from '../errors';
import type { MailMessage, Mailer } from '../ports';
import { failedCallMessage } from './sdk-errors';

/** SES v2's limit on a raw message, attachments and encoding included. */
export const SES_MAX_MESSAGE_BYTES = 40 * 1024 * 1024;

/** The raw message is larger than the mail service accepts. */
export class MessageTooLargeError extends Error {
  override readonly name = 'MessageTooLargeError';
  constructor(
    readonly sizeBytes: number,
    readonly maxBytes: number,
  ) {
    super(`the email is ${sizeBytes} bytes as sent, more than the ${maxBytes} bytes the mail service accepts`);
  }
}

export interface SesMailerOptions {
  /** Largest raw message to send, bytes. @default 40 MB (the SES v2 limit) */
  maxMessageBytes?: number;
}

/** Builds the raw MIME message (RFC 5322) of a MailMessage. */
export async function buildRawMessage(message: MailMessage): Promise<Buffer> {
  const composer = new MailComposer({
    from: message.from,
    to: message.to,
    subject: message.subject,
    text: message.text,
    ...(message.html !== undefined ? { html: message.html } : {}),
    attachments: (message.attachments ?? []).map((a) => ({
      filename: a.filename,
      content: a.content,
      contentType: a.contentType,
      contentTransferEncoding: 'base64',
    })),
  });
  return composer.compile().build();
}

export class SesMailer implements Mailer {
  readonly maxMessageBytes: number;

  constructor(
    private readonly client: SESv2Client,
    opts: SesMailerOptions = {},
  ) {
    this.maxMessageBytes = opts.maxMessageBytes ?? SES_MAX_MESSAGE_BYTES;
  }

  async send(message: MailMessage): Promise<{ messageId: string }> {
    const raw = await buildRawMessage(message);
    if (raw.length > this.maxMessageBytes) throw new MessageTooLargeError(raw.length, this.maxMessageBytes);
    try {
      const res = await this.client.send(
        new SendEmailCommand({
          FromEmailAddress: message.from,
          Destination: { ToAddresses: message.to },
          Content: { Raw: { Data: raw } },
        }),
      );
      if (!res.MessageId) throw new Error('the response has no MessageId');
      return { messageId: res.MessageId };
    } catch (err) {
      throw new StorageError(
        failedCallMessage(
          `SES SendEmail from ${message.from} to ${message.to.join(', ')} ("${message.subject}", ${raw.length} bytes)`,
          err,
        ),
        ExitCode.MAIL,
        { cause: err },
      );
    }
  }
}
