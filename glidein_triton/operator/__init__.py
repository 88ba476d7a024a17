"""The operator side: the payload a factory serves, and the factory and frontend configuration commands."""
