import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseAppConfig, requireShape } from '../../../runtime/config/schema';
import { globToRegExp } from '../../../runtime/config/sources-schema';

const filesPipeline = { shape: 'files', name: 'xml-json', task: { type: 'xml-to-json' }, recipients: ['a@example.com'] };
const source = {
  name: 'partner-a',
  host: 'sftp.partner.example',
  user: 'acme',
  privateKey: { secretName: 'batch-fanout/partner-a/key', env: 'PARTNER_A_KEY' },
  hostKeySha256: `SHA256:${'A'.repeat(43)}`,
  folder: '/outbox',
  glob: '*.xml',
  pipeline: 'xml-json',
  schedule: 'rate(15 minutes)',
};

function problems(raw: unknown): string[] {
  try {
    parseAppConfig(raw, 'test');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  return [];
}

describe('files pipelines config', () => {
  it('fills the xml-to-json defaults and the batch limits', () => {
    const p = requireShape(parseAppConfig({ pipelines: [filesPipeline] }).pipelines[0]!, 'files');
    assert.deepEqual(p.task, {
      type: 'xml-to-json',
      attributePrefix: '@',
      textKey: '#text',
      alwaysArray: [],
      numeric: [],
      removeNamespacePrefixes: false,
      maxFileBytes: 10 * 1024 * 1024,
      pretty: false,
    });
    assert.equal(p.chunkSize, 1000);
    assert.equal(p.zip.maxInflatedBytes, 10 * 1024 ** 3);
  });

  it('names a bad element path with its field', () => {
    const lines = problems({ pipelines: [{ ...filesPipeline, task: { type: 'xml-to-json', alwaysArray: ['orders..order'] } }] });
    assert.match(lines[0]!, /^pipelines\[0\]\.task\.alwaysArray\[0\]: must be a dotted element path .*\(got "orders\.\.order"\)/);
  });
});

describe('sources config', () => {
  it('reads a source with its defaults: port 22, keep after copy, two minutes of least age', () => {
    const s = parseAppConfig({ pipelines: [filesPipeline], sources: [source] }).sources[0]!;
    assert.equal(s.port, 22);
    assert.equal(s.afterCopy, 'keep');
    assert.equal(s.minAgeSeconds, 120);
  });

  it('refuses an unknown pipeline, a duplicate name, a fingerprint that is not SHA256 and a bad schedule, all at once', () => {
    const lines = problems({
      pipelines: [filesPipeline],
      sources: [
        { ...source, pipeline: 'nope', hostKeySha256: 'MD5:aa:bb' },
        { ...source, schedule: 'every 5 minutes', afterCopy: { moveTo: '/done' } },
      ],
    });
    assert.ok(
      lines.some((l) => /^sources\[0\]\.hostKeySha256: must be SHA256:/.test(l)),
      lines.join('\n'),
    );
    assert.ok(
      lines.some((l) => /^sources\[1\]\.schedule: must be rate/.test(l)),
      lines.join('\n'),
    );
    const refined = problems({ pipelines: [filesPipeline], sources: [{ ...source, pipeline: 'nope' }, source] });
    assert.ok(
      refined.some((l) => /^sources\[0\]\.pipeline: "nope" is not a pipeline of this config \(xml-json\)/.test(l)),
      refined.join('\n'),
    );
    assert.ok(
      refined.some((l) => /^sources\[1\]\.name: duplicate source name "partner-a"/.test(l)),
      refined.join('\n'),
    );
  });

  it('matches file names against globs with classes and alternatives', () => {
    const re = globToRegExp('order-[0-9]?.{xml,XML}');
    assert.ok(re.test('order-12.xml'));
    assert.ok(re.test('order-3a.XML'));
    assert.ok(!re.test('order-x1.xml'));
    assert.ok(!re.test('order-12.xml.part'));
    assert.ok(globToRegExp('*.xml').test('a.b.xml'));
    assert.ok(!globToRegExp('*.xml').test('a.xmlx'));
  });
});
