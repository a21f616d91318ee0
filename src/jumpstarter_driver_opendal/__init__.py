"""Storage: OpenDAL-backed file storage, and file-backed flasher / SD-card mux stand-ins."""
