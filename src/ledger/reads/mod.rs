//! Plain PostgreSQL reads behind the lookups, by family: [`stock`],
//! [`movements`] and single audit [`entries`]. [`super::Ledger`]'s read
//! methods put the cache in front of the current figures and movements;
//! the lists, the history and past figures always read PostgreSQL.

pub mod entries;
pub mod movements;
pub mod stock;

pub use entries::{
    ClosingEntry, HistoryItem, Rejection, history, recent_history, rejections, rejections_since,
};
pub use movements::{MovementFilter, MovementsPage, movement, movements};
pub use stock::{
    Holding, ProductFigures, StockFigure, StockItem, WarehouseQuantity, holdings, product_stock,
    stock, stock_as_of, stock_figures, stock_many, under_since, warehouse_stock,
    warehouse_stock_as_of,
};
