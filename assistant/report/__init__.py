"""Reports a clinic can file: one analysis as a PDF consultation report and as a FHIR R4 Bundle.

A subpackage rather than two modules in consult/ because the pieces have separate jobs:
`provenance` (weights fingerprints), `document` (what goes into a report, anonymised), `pdf`, `fhir`
and `outputs` (the CLI's file rules). Both formats render computed values only; nothing is generated.

May import data, consult, viz, and the weights' folders of segment and murmur; serve/ and the app import it.
"""
