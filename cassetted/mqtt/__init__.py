"""Transport: the broker connection, the topic router, the publisher of events and state."""
