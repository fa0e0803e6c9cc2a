//! Bindings of the LabHit extension contract (`wit/labhit-extension.wit`).
#![warn(missing_docs)]
