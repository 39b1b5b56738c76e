/**
 * The fixed parts of a SpreadsheetML package (ECMA-376): content types, relationships, styles,
 * the workbook part, and the head and tail of a streamed worksheet part.
 */
import { columnLetter } from '../records/raw';
import { escapeXmlAttr, STYLE } from './cells';

const XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n';
const NS_MAIN = 'http://schemas.openxmlformats.org/spreadsheetml/2006/main';
const NS_REL = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
const NS_PKG_REL = 'http://schemas.openxmlformats.org/package/2006/relationships';
const CT = 'application/vnd.openxmlformats-officedocument.spreadsheetml';

/** Excel's format codes for the two date styles. */
const DATE_FORMAT = 'yyyy-mm-dd';
const DATE_TIME_FORMAT = 'yyyy-mm-dd hh:mm:ss';

export function contentTypesXml(sheetCount: number): string {
  let sheets = '';
  for (let i = 1; i <= sheetCount; i++) {
    sheets += `<Override PartName="/xl/worksheets/sheet${i}.xml" ContentType="${CT}.worksheet+xml"/>`;
  }
  return (
    `${XML_DECL}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">` +
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
    '<Default Extension="xml" ContentType="application/xml"/>' +
    `<Override PartName="/xl/workbook.xml" ContentType="${CT}.sheet.main+xml"/>` +
    sheets +
    `<Override PartName="/xl/styles.xml" ContentType="${CT}.styles+xml"/>` +
    '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>' +
    '<Override PartName="/docProps/app.xml" ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>' +
    '</Types>'
  );
}

export function rootRelsXml(): string {
  return (
    `${XML_DECL}<Relationships xmlns="${NS_PKG_REL}">` +
    `<Relationship Id="rId1" Type="${NS_REL}/officeDocument" Target="xl/workbook.xml"/>` +
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>' +
    `<Relationship Id="rId3" Type="${NS_REL}/extended-properties" Target="docProps/app.xml"/>` +
    '</Relationships>'
  );
}

export function corePropsXml(created: Date): string {
  const when = created.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return (
    `${XML_DECL}<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" ` +
    'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" ' +
    'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
    '<dc:creator>batch-fanout</dc:creator>' +
    `<dcterms:created xsi:type="dcterms:W3CDTF">${when}</dcterms:created>` +
    `<dcterms:modified xsi:type="dcterms:W3CDTF">${when}</dcterms:modified>` +
    '</cp:coreProperties>'
  );
}

export function appPropsXml(): string {
  return (
    `${XML_DECL}<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">` +
    '<Application>batch-fanout</Application></Properties>'
  );
}

/** Relationships of the workbook part: sheets rId1..rIdN, then styles (every string is inline: no shared strings). */
export function workbookRelsXml(sheetCount: number): string {
  let rels = '';
  for (let i = 1; i <= sheetCount; i++) {
    rels += `<Relationship Id="rId${i}" Type="${NS_REL}/worksheet" Target="worksheets/sheet${i}.xml"/>`;
  }
  return (
    `${XML_DECL}<Relationships xmlns="${NS_PKG_REL}">${rels}` +
    `<Relationship Id="rId${sheetCount + 1}" Type="${NS_REL}/styles" Target="styles.xml"/>` +
    '</Relationships>'
  );
}

/**
 * Styles; the order of `cellXfs` is the `STYLE` table of `cells.ts`: normal, header (bold, tinted,
 * bottom border), date, date-time, quoted text (quotePrefix), summary label (bold).
 */
export function stylesXml(): string {
  const xf = (attrs: string) => `<xf xfId="0" ${attrs}/>`;
  const cellXfs = [
    xf('numFmtId="0" fontId="0" fillId="0" borderId="0"'),
    xf('numFmtId="0" fontId="1" fillId="2" borderId="1" applyFont="1" applyFill="1" applyBorder="1" quotePrefix="1"'),
    xf('numFmtId="164" fontId="0" fillId="0" borderId="0" applyNumberFormat="1"'),
    xf('numFmtId="165" fontId="0" fillId="0" borderId="0" applyNumberFormat="1"'),
    xf('numFmtId="0" fontId="0" fillId="0" borderId="0" quotePrefix="1"'),
    xf('numFmtId="0" fontId="1" fillId="0" borderId="0" applyFont="1" quotePrefix="1"'),
  ];
  if (cellXfs.length !== Object.keys(STYLE).length) throw new Error('styles.xml and STYLE disagree');
  return (
    `${XML_DECL}<styleSheet xmlns="${NS_MAIN}">` +
    `<numFmts count="2"><numFmt numFmtId="164" formatCode="${DATE_FORMAT}"/>` +
    `<numFmt numFmtId="165" formatCode="${DATE_TIME_FORMAT}"/></numFmts>` +
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>' +
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>' +
    '<fills count="3"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>' +
    '<fill><patternFill patternType="solid"><fgColor rgb="FFDDEBF7"/><bgColor indexed="64"/></patternFill></fill></fills>' +
    '<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>' +
    '<border><left/><right/><top/><bottom style="thin"><color indexed="64"/></bottom><diagonal/></border></borders>' +
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>' +
    `<cellXfs count="${cellXfs.length}">${cellXfs.join('')}</cellXfs>` +
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>' +
    '<dxfs count="0"/><tableStyles count="0" defaultTableStyle="TableStyleMedium2" defaultPivotStyle="PivotStyleLight16"/>' +
    '</styleSheet>'
  );
}

/** `'Sheet name'!$A$1:$J$20` */
function absoluteRange(sheetName: string, columns: number, lastRow: number): string {
  return `'${sheetName.replace(/'/g, "''")}'!$A$1:$${columnLetter(columns - 1)}$${lastRow}`;
}

export interface WorkbookSheetEntry {
  name: string;
  /** Range of the sheet's autofilter, when it has one (defined name `_xlnm._FilterDatabase`). */
  filter?: { columns: number; lastRow: number };
}

/**
 * The workbook part. It names the sheets in order and declares each autofilter's hidden
 * `_xlnm._FilterDatabase` name, as Excel does (LibreOffice needs it to show the filter buttons).
 */
export function workbookXml(sheets: readonly WorkbookSheetEntry[], activeTab: number): string {
  let sheetList = '';
  let names = '';
  sheets.forEach((s, i) => {
    sheetList += `<sheet name="${escapeXmlAttr(s.name)}" sheetId="${i + 1}" r:id="rId${i + 1}"/>`;
    if (s.filter) {
      names +=
        `<definedName name="_xlnm._FilterDatabase" localSheetId="${i}" hidden="1">` +
        `${escapeXmlAttr(absoluteRange(s.name, s.filter.columns, s.filter.lastRow))}</definedName>`;
    }
  });
  return (
    `${XML_DECL}<workbook xmlns="${NS_MAIN}" xmlns:r="${NS_REL}">` +
    `<bookViews><workbookView xWindow="0" yWindow="0" windowWidth="28800" windowHeight="15000" activeTab="${activeTab}"/></bookViews>` +
    `<sheets>${sheetList}</sheets>` +
    (names ? `<definedNames>${names}</definedNames>` : '') +
    '<calcPr calcId="191029"/>' +
    '</workbook>'
  );
}

export interface SheetHeadOptions {
  /** Column widths in characters, one per column. */
  widths: readonly number[];
  /** Freeze the first row. */
  freezeHeader: boolean;
  /** The sheet is the one shown when the workbook opens. */
  selected: boolean;
}

/** Everything of a worksheet part before its first row. */
export function sheetHeadXml(o: SheetHeadOptions): string {
  const selected = o.selected ? ' tabSelected="1"' : '';
  const view = o.freezeHeader
    ? `<sheetView workbookViewId="0"${selected}><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>` +
      '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView>'
    : `<sheetView workbookViewId="0"${selected}/>`;
  let cols = '';
  o.widths.forEach((w, i) => {
    cols += `<col min="${i + 1}" max="${i + 1}" width="${w}" customWidth="1"/>`;
  });
  return (
    `${XML_DECL}<worksheet xmlns="${NS_MAIN}" xmlns:r="${NS_REL}">` +
    `<sheetViews>${view}</sheetViews>` +
    '<sheetFormatPr defaultRowHeight="15"/>' +
    (cols ? `<cols>${cols}</cols>` : '') +
    '<sheetData>'
  );
}

/** Everything of a worksheet part after its last row. */
export function sheetTailXml(filter?: { columns: number; lastRow: number }): string {
  const autoFilter = filter ? `<autoFilter ref="A1:${columnLetter(filter.columns - 1)}${filter.lastRow}"/>` : '';
  return (
    `</sheetData>${autoFilter}` +
    '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>' +
    '</worksheet>'
  );
}
