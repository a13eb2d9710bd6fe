//! What runs only natively (`--features native`): PhraseCut data, evaluation, training, run
//! reports and model downloads.

pub mod data;
pub mod eval;
pub mod hub;
pub mod image_file;
pub mod report;
pub mod train;
