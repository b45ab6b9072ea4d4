//! A queue to one task of this process, started when none runs: at first,
//! or when the runtime that ran it has ended (each test has its own).

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, error::SendError};

pub(crate) struct TaskQueue<T> {
    /// To the task; None until one is started.
    queue: Arc<Mutex<Option<UnboundedSender<T>>>>,
}

impl<T> Clone for TaskQueue<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static> TaskQueue<T> {
    pub(crate) fn new() -> Self {
        Self {
            queue: Arc::new(Mutex::new(None)),
        }
    }

    /// Hands `item` to the task, spawning `start(items)` when none runs.
    pub(crate) fn send<F>(&self, item: T, start: impl FnOnce(UnboundedReceiver<T>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut queue = self
            .queue
            .lock()
            .expect("a task queue's lock is never poisoned");
        let item = match queue.as_ref() {
            Some(task) => match task.send(item) {
                Ok(()) => return,
                Err(SendError(item)) => item,
            },
            None => item,
        };
        let (task, items) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(start(items));
        let _ = task.send(item);
        *queue = Some(task);
    }
}
