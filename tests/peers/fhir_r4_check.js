// Validates FHIR R4 JSON resources with FHIR.js (npm `fhir`, pinned in package.json), a
// library this project did not write: every element against the FHIR R4 core
// StructureDefinitions (names, types, cardinality) and required value set bindings.
//
//     node fhir_r4_check.js FILE...
//
// Prints one JSON object per file: {"file", "valid", "errors": [{location, message}]}.
const { Fhir } = require('fhir');
const fs = require('fs');

const fhir = new Fhir();
for (const file of process.argv.slice(2)) {
  let errors;
  try {
    const resource = JSON.parse(fs.readFileSync(file, 'utf8'));
    const result = fhir.validate(resource, { errorOnUnexpected: true });
    errors = result.messages
      .filter((m) => m.severity === 'error')
      .map((m) => ({ location: m.location, message: m.message }));
  } catch (e) {
    errors = [{ location: '', message: `cannot read: ${e.message}` }];
  }
  console.log(JSON.stringify({ file, valid: errors.length === 0, errors }));
}
