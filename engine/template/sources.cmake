# Sources of the template module (owned by that module).
